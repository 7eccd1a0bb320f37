// Package api is the HTTP server of rocket-rides: the routes, the parsing and
// validation of requests, and the one place where errors become HTTP
// responses. The work itself is package rides'.
package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
)

// Defaults of the server.
const (
	// MaxBodyBytesDefault is the largest request body accepted.
	MaxBodyBytesDefault = 64 << 10

	// RequestTimeoutDefault is how long the server gives a request to
	// write its response (http.Server's WriteTimeout, less a margin). A
	// request's own waits are bounded more tightly: the Stripe timeout, and
	// the database's.
	RequestTimeoutDefault = 60 * time.Second
)

// headerIdempotentReplayed marks a response replayed from a finished key,
// as Stripe does.
const headerIdempotentReplayed = "Idempotent-Replayed"

// ServerConfig configures a Server. Zero fields take their defaults.
type ServerConfig struct {
	// Logger receives a line per request and every unexpected error. Nil
	// discards them.
	Logger *slog.Logger

	// Metrics, if set, records each request. Nil records nothing. The
	// server does not serve them: the operator's listener (package admin)
	// does, off the public port.
	Metrics *metrics.Metrics

	// Ready reports whether the service can take requests (the database
	// answers), for GET /readyz. Nil means always ready.
	Ready func(ctx context.Context) error
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ServerConfig) withDefaults() *ServerConfig {
	var config ServerConfig
	if c != nil {
		config = *c
	}
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	return &config
}

// Server serves the rocket-rides API.
type Server struct {
	config  *ServerConfig
	creator *rides.Creator
	echo    *echo.Echo
	logger  *slog.Logger
}

// NewServer returns a server that creates rides with creator. A nil config
// means every default. Its only error is a missing creator: ServerConfig has
// no setting that can be nonsense.
func NewServer(creator *rides.Creator, config *ServerConfig) (*Server, error) {
	if creator == nil {
		return nil, errors.New("api server: a creator is required")
	}
	config = config.withDefaults()
	logger := config.Logger
	s := &Server{config: config, creator: creator, echo: echo.New(), logger: logger}
	s.echo.HideBanner = true
	s.echo.HidePort = true
	s.echo.IPExtractor = echo.ExtractIPDirect()
	s.echo.HTTPErrorHandler = s.handleError
	s.echo.Use(s.observe, middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			logger.ErrorContext(c.Request().Context(), "api: panic", slog.String("error", err.Error()), slog.String("stack", string(stack)))
			return err
		},
	}), allowMethods)

	s.echo.POST(rides.RequestPath, s.createRide)
	s.echo.GET("/rides/:id", s.getRide)
	s.echo.POST("/rides/:id/cancel", s.cancelRide)
	s.echo.GET("/healthz", s.healthz)
	s.echo.GET("/readyz", s.readyz)
	return s, nil
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.echo.ServeHTTP(w, r)
}

// authenticated is who sent a request, and under which key.
type authenticated struct {
	// key is the request's idempotency key, and known the user's key of
	// that value as read with the user (nil if there is none).
	key   string
	known *idempotency.KnownKey
	user  *db.User
}

// authenticate is the one authentication of every endpoint: the
// credential, then (keyed) the idempotency key, read with the user in one
// round trip. An endpoint without keys (a GET) ignores the header.
func (s *Server) authenticate(c echo.Context, keyed bool) (*authenticated, error) {
	ctx := c.Request().Context()
	authorization, err := readAuthorization(c.Request().Header)
	if err != nil {
		return nil, err
	}
	var key string
	var keyErr error
	if keyed {
		key, keyErr = readIdempotencyKey(c.Request().Header)
	}
	user, known, err := s.creator.Authenticate(ctx, authorization, key)
	if err != nil {
		return nil, err
	}
	if keyErr != nil {
		return nil, keyErr
	}
	return &authenticated{key: key, known: known, user: user}, nil
}

// createRide is POST /rides. Checks come in a fixed order: credentials,
// idempotency key, body size, content type, parameters; then the request
// runs, or replays.
func (s *Server) createRide(c echo.Context) error {
	auth, err := s.authenticate(c, true)
	if err != nil {
		return err
	}
	params, err := readParams(c.Request())
	if err != nil {
		return err
	}
	response, err := s.creator.Create(c.Request().Context(), &rides.Request{
		IdempotencyKey: auth.key,
		Known:          auth.known,
		OriginIP:       originIP(c),
		Params:         params.params,
		RaiseError:     params.raiseError,
		User:           auth.user,
	})
	if err != nil {
		return err
	}
	return writeResponse(c, response)
}

// cancelRide is POST /rides/{id}/cancel. Checks come in the order of POST
// /rides': credentials, idempotency key, ride id, body size, content type,
// parameters; then the request runs, or replays.
func (s *Server) cancelRide(c echo.Context) error {
	auth, err := s.authenticate(c, true)
	if err != nil {
		return err
	}
	rideID, err := readRideID(c)
	if err != nil {
		return err
	}
	reason, err := readCancelParams(c.Request())
	if err != nil {
		return err
	}
	response, err := s.creator.Cancel(c.Request().Context(), &rides.CancelRequest{
		IdempotencyKey: auth.key,
		Known:          auth.known,
		OriginIP:       originIP(c),
		Params:         rides.CancelParams{Reason: reason, RideID: rideID},
		User:           auth.user,
	})
	if err != nil {
		return err
	}
	return writeResponse(c, response)
}

// getRide is GET /rides/{id}: the user's ride with its status. No
// idempotency key: a GET is idempotent by itself.
func (s *Server) getRide(c echo.Context) error {
	auth, err := s.authenticate(c, false)
	if err != nil {
		return err
	}
	rideID, err := readRideID(c)
	if err != nil {
		return err
	}
	ride, err := s.creator.Get(c.Request().Context(), auth.user, rideID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ride)
}

// readRideID reads the path's ride id: a positive integer in plain
// decimal, or no ride at all (404, as for a ride that does not exist).
func readRideID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != raw {
		return 0, rides.ErrRideNotFound
	}
	return id, nil
}

// writeResponse writes a workflow's response, marking a replay as Stripe
// does.
func writeResponse(c echo.Context, response *idempotency.Response) error {
	if response.Replayed {
		c.Response().Header().Set(headerIdempotentReplayed, "true")
	}
	return c.Blob(response.Status, contentType(response.Status), response.Body)
}

// originIP is the client's address, for the audit record; the unspecified
// address when the connection has none (a Unix socket).
func originIP(c echo.Context) netip.Addr {
	origin, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return origin.Unmap()
}

// readParams reads and parses the body of POST /rides.
func readParams(r *http.Request) (*rideParams, error) {
	body, mediaType, err := readBody(r)
	if err != nil {
		return nil, err
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		return parseForm(body)
	case "application/json":
		return parseJSON(body)
	default:
		return nil, errUnsupportedMediaType
	}
}

// readCancelParams reads and parses the optional body of POST
// /rides/{id}/cancel: its reason, or "" for none. An empty body needs no
// Content-Type.
func readCancelParams(r *http.Request) (string, error) {
	body, mediaType, err := readBody(r)
	switch {
	case len(body) == 0 && (err == nil || errors.Is(err, errUnsupportedMediaType)):
		return "", nil // nothing to parse, whatever the Content-Type says
	case err != nil:
		return "", err
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		return parseCancelForm(body)
	case "application/json":
		return parseCancelJSON(body)
	default:
		return "", errUnsupportedMediaType
	}
}

// readBody reads a request's body, at most MaxBodyBytesDefault, and its
// media type (a form when the request names none).
func readBody(r *http.Request) ([]byte, string, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytesDefault))
	if err != nil {
		var maxBytesErr *http.MaxBytesError
		if errors.As(err, &maxBytesErr) {
			return nil, "", errBodyTooLarge
		}
		return nil, "", fmt.Errorf("%w: %w", errBodyUnreadable, err)
	}
	mediaType := "application/x-www-form-urlencoded"
	if header := r.Header.Get(echo.HeaderContentType); header != "" {
		mediaType, _, err = mime.ParseMediaType(header)
		if err != nil {
			return body, "", errUnsupportedMediaType
		}
	}
	return body, mediaType, nil
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	if s.config.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.config.Ready(ctx); err != nil {
			s.logger.WarnContext(ctx, "api: not ready", slog.String("error", err.Error()))
			return errNotReady
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// observe logs each request and records it in the metrics.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		replayed := c.Response().Header().Get(headerIdempotentReplayed) != ""
		if s.config.Metrics != nil {
			s.config.Metrics.ObserveRequest(route, c.Request().Method, status, elapsed, replayed)
		}
		s.logger.InfoContext(c.Request().Context(), "api: request",
			slog.String("method", c.Request().Method),
			slog.String("path", c.Request().URL.Path),
			slog.Int("status", status),
			slog.Duration("duration", elapsed),
			slog.Bool("replayed", replayed),
		)
		return nil
	}
}

// Serve serves handler on addr until ctx is done, then shuts down
// gracefully: it stops accepting connections and waits up to
// shutdownTimeout for requests in flight.
func Serve(ctx context.Context, addr string, handler http.Handler, logger *slog.Logger) error {
	const shutdownTimeout = 10 * time.Second
	server := &http.Server{
		Addr:              addr,
		Handler:           handler,
		IdleTimeout:       2 * time.Minute,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      RequestTimeoutDefault + 5*time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	logger.InfoContext(ctx, "api: listening", slog.String("addr", listener.Addr().String()))

	errs := make(chan error, 1)
	go func() { errs <- server.Serve(listener) }()
	select {
	case err := <-errs:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.InfoContext(ctx, "api: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.InfoContext(ctx, "api: stopped")
	return nil
}

func contentType(status int) string {
	if status >= http.StatusBadRequest {
		return "application/problem+json"
	}
	return echo.MIMEApplicationJSON
}
