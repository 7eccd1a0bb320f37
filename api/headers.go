package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// allowMethods answers a method that a route does not have, OPTIONS
// included, with 405 and an Allow header listing the route's methods, the
// same for every method. Left alone, Echo answers OPTIONS with 204 and lists
// OPTIONS in every Allow header, a method the API does not serve.
func allowMethods(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Echo's router sets this only when the path has routes but none
		// for the request's method.
		routed, ok := c.Get(echo.ContextKeyHeaderAllow).(string)
		if !ok {
			return next(c)
		}
		var methods []string
		for _, method := range strings.Split(routed, ", ") {
			if method != http.MethodOptions {
				methods = append(methods, method)
			}
		}
		c.Response().Header().Set(echo.HeaderAllow, strings.Join(methods, ", "))
		return echo.ErrMethodNotAllowed
	}
}
