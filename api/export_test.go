package api

import "github.com/labstack/echo/v4"

// Routes lists the server's routes, for tests that cover every route.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }
