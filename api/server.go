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

	// RequestDeadlineDefault is how long a request that holds its key may
	// work before it is ended: above the Stripe timeout (20 s) plus the
	// database's deadlines of the phases around it (db.TxTimeoutDefault
	// each), and well under the lock timeout (90 s), so that a request's lock
	// never goes stale while it still works.
	RequestDeadlineDefault = 40 * time.Second

	// RequestTimeoutDefault is how long the server gives a request to
	// write its response (http.Server's WriteTimeout, less a margin): the
	// request deadline plus the time to answer.
	RequestTimeoutDefault = RequestDeadlineDefault + 5*time.Second

	// IdleTimeoutDefault is how long a keep-alive connection may wait for
	// its next request before the server closes it. Each open connection
	// holds a goroutine and its buffers (about 40 KB, measured): after a
	// burst of 1,024 clients that stay connected, a longer wait kept RSS at
	// 2.5 times idle (60 MB against 24 MB) until they left. A client that
	// comes back later only opens a new connection.
	IdleTimeoutDefault = 15 * time.Second
)

// StatusClientClosedRequest is the status recorded (in the metrics and the
// log) for a request whose client hung up before it was answered: nginx's
// 499, never sent, and counted apart from the 5xx.
const StatusClientClosedRequest = 499

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

	// RequestDeadline bounds the work of a request once it runs the
	// domain code: from then on the client's cancellation no longer reaches
	// it (a client that hangs up does not stop a charge half way), and this
	// deadline, or shutdown, ends it instead. Zero means
	// RequestDeadlineDefault.
	RequestDeadline time.Duration

	// MaxInFlight is the most POST /rides requests in the server at once;
	// the rest answer 503 overloaded at once. Zero means MaxInFlightDefault.
	MaxInFlight int

	// MaxWorking is the most requests that run the workflow at once
	// (replays of finished keys do not count); a request that finds none
	// free within AdmissionWait answers 503 overloaded, before it writes
	// anything. Zero means MaxWorkingDefault.
	MaxWorking int

	// AdmissionWait is how long a request waits for a MaxWorking place.
	// Zero means AdmissionWaitDefault.
	AdmissionWait time.Duration

	// ShutdownTimeout is how long Serve lets requests in flight finish at
	// shutdown before it ends them. Zero means the request deadline and a
	// margin, so that every request ends on its own.
	ShutdownTimeout time.Duration

	// IdleTimeout is how long Serve keeps a keep-alive connection open
	// waiting for its next request. Zero means IdleTimeoutDefault.
	IdleTimeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ServerConfig) withDefaults() *ServerConfig {
	var config ServerConfig
	if c != nil {
		config = *c
	}
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	config.RequestDeadline = cmp.Or(config.RequestDeadline, RequestDeadlineDefault)
	config.MaxInFlight = cmp.Or(config.MaxInFlight, MaxInFlightDefault)
	config.MaxWorking = cmp.Or(config.MaxWorking, MaxWorkingDefault)
	config.AdmissionWait = cmp.Or(config.AdmissionWait, AdmissionWaitDefault)
	config.IdleTimeout = cmp.Or(config.IdleTimeout, IdleTimeoutDefault)
	return &config
}

// validate rejects settings the server cannot run with.
func (c *ServerConfig) validate() error {
	switch {
	case c.RequestDeadline < 0:
		return fmt.Errorf("RequestDeadline must not be negative, got %s", c.RequestDeadline)
	case c.MaxInFlight < 0:
		return fmt.Errorf("MaxInFlight must not be negative, got %d", c.MaxInFlight)
	case c.MaxWorking < 0:
		return fmt.Errorf("MaxWorking must not be negative, got %d", c.MaxWorking)
	case c.MaxWorking > c.MaxInFlight:
		return fmt.Errorf("MaxWorking must not exceed MaxInFlight (%d), got %d", c.MaxInFlight, c.MaxWorking)
	case c.AdmissionWait < 0:
		return fmt.Errorf("AdmissionWait must not be negative, got %s", c.AdmissionWait)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("ShutdownTimeout must not be negative, got %s", c.ShutdownTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("IdleTimeout must not be negative, got %s", c.IdleTimeout)
	}
	return nil
}

// Server serves the rocket-rides API.
type Server struct {
	admission *admission
	config    *ServerConfig
	creator   *rides.Creator
	echo      *echo.Echo
	logger    *slog.Logger

	// abortCtx is cancelled, with errShuttingDown, when shutdown has waited
	// long enough: it ends the work of every request still running.
	abortCtx context.Context
	abort    context.CancelCauseFunc
}

// NewServer returns a server that creates rides with creator. A nil config
// means every default.
func NewServer(creator *rides.Creator, config *ServerConfig) (*Server, error) {
	if creator == nil {
		return nil, errors.New("api server: a creator is required")
	}
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("api server: %w", err)
	}
	logger := config.Logger
	s := &Server{config: config, creator: creator, echo: echo.New(), logger: logger}
	s.abortCtx, s.abort = context.WithCancelCause(context.Background())
	s.admission = newAdmission(config.MaxInFlight, config.MaxWorking, config.AdmissionWait, config.Metrics)
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

	s.echo.POST(rides.RequestPath, s.createRide, s.admission.admit)
	s.echo.GET("/rides/:id", s.getRide, s.admission.admit)
	s.echo.POST("/rides/:id/cancel", s.cancelRide, s.admission.admit)
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
	ctx, done, err := s.beginWork(c, auth.known)
	if err != nil {
		return err
	}
	defer done()
	response, err := s.creator.Create(ctx, &rides.Request{
		IdempotencyKey: auth.key,
		Known:          auth.known,
		OriginIP:       originIP(c),
		Params:         params.params,
		RaiseError:     params.raiseError,
		User:           auth.user,
	})
	if err != nil {
		return workError(ctx, err)
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
	ctx, done, err := s.beginWork(c, auth.known)
	if err != nil {
		return err
	}
	defer done()
	response, err := s.creator.Cancel(ctx, &rides.CancelRequest{
		IdempotencyKey: auth.key,
		Known:          auth.known,
		OriginIP:       originIP(c),
		Params:         rides.CancelParams{Reason: reason, RideID: rideID},
		User:           auth.user,
	})
	if err != nil {
		return workError(ctx, err)
	}
	return writeResponse(c, response)
}

// beginWork admits a keyed request to the bound on requests at work (a
// replay of a finished key skips it: replays are the last to be shed) and
// returns the context its domain code runs on: no longer the client's, so
// a hang-up cannot stop it half-way, but bounded by the request deadline and
// ended by shutdown. The caller calls done once the work is over.
func (s *Server) beginWork(c echo.Context, known *idempotency.KnownKey) (context.Context, func(), error) {
	ctx := c.Request().Context()
	release := func() {}
	if known == nil || known.RecoveryPoint != idempotency.RecoveryPointFinished {
		var err error
		if release, err = s.admission.work(ctx); err != nil {
			return nil, nil, err
		}
	}
	ctx, cancel := s.workContext(ctx)
	return ctx, func() { cancel(); release() }, nil
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

// workContext returns the context the domain code of a request runs in: the
// request's values without its cancellation, ended by the request deadline
// or by shutdown's abort.
func (s *Server) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), s.config.RequestDeadline, errRequestDeadline)
	stop := context.AfterFunc(s.abortCtx, func() { cancel() })
	return ctx, func() {
		stop()
		cancel()
	}
}

// workError names why a request's work ended, when its deadline or shutdown
// ended it: the domain code's own error (a phase's, Stripe's) says only
// that its context was done.
func workError(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, context.Canceled) {
		cause = errShuttingDown // the abort cancels without a cause of its own
	}
	return fmt.Errorf("%w: %w", cause, err)
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
		if c.Request().Context().Err() != nil {
			// The client hung up before it was answered (or as it was): its
			// own doing, counted apart from the 5xx.
			status = StatusClientClosedRequest
		}
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

// shutdownMargin is what shutdown allows past the request deadline: the
// time to answer, and for an ended request to release its key.
const shutdownMargin = 5 * time.Second

// Serve serves server on addr until ctx is done, then shuts down as
// ServeListener does.
func Serve(ctx context.Context, addr string, server *Server) error {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return ServeListener(ctx, listener, server)
}

// ServeListener serves server on listener until ctx is done, then shuts
// down: it stops accepting connections, lets the requests in flight finish
// for up to ShutdownTimeout (by default the request deadline and a margin,
// so that a request waiting on Stripe gets its answer), then ends the work
// of those still running, which release their keys and answer 503
// shutting-down, and waits for them up to the margin again. It returns nil
// when shutdown went so. It closes listener.
func ServeListener(ctx context.Context, listener net.Listener, server *Server) error {
	logger := server.logger
	httpServer := &http.Server{
		Handler:           server,
		IdleTimeout:       server.config.IdleTimeout,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      server.config.RequestDeadline + shutdownMargin,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	logger.InfoContext(ctx, "api: listening", slog.String("addr", listener.Addr().String()),
		slog.Duration("request_deadline", server.config.RequestDeadline), slog.Int("max_in_flight", server.config.MaxInFlight),
		slog.Int("max_working", server.config.MaxWorking), slog.Duration("idle_timeout", server.config.IdleTimeout))

	go server.admission.releaseMemoryWhenIdle(ctx, server.config.IdleTimeout)
	errs := make(chan error, 1)
	go func() { errs <- httpServer.Serve(listener) }()
	select {
	case err := <-errs:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownTimeout := server.ShutdownTimeout()
	logger.InfoContext(ctx, "api: shutting down", slog.Duration("shutdown_timeout", shutdownTimeout))
	ctx = context.WithoutCancel(ctx)
	shutdownCtx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err == nil {
		logger.InfoContext(ctx, "api: stopped")
		return nil
	}
	logger.WarnContext(ctx, "api: ending requests still running at the shutdown timeout")
	server.abort(errShuttingDown)
	abortCtx, cancel := context.WithTimeout(ctx, shutdownMargin)
	defer cancel()
	if err := httpServer.Shutdown(abortCtx); err != nil {
		_ = httpServer.Close()
		return fmt.Errorf("shutting down: requests still running %s after they were ended: %w", shutdownMargin, err)
	}
	logger.InfoContext(ctx, "api: stopped")
	return nil
}

// ShutdownTimeout is how long shutdown lets requests in flight finish
// before it ends them: ServerConfig.ShutdownTimeout, or the request
// deadline and a margin.
func (s *Server) ShutdownTimeout() time.Duration {
	return cmp.Or(s.config.ShutdownTimeout, s.config.RequestDeadline+shutdownMargin)
}

func contentType(status int) string {
	if status >= http.StatusBadRequest {
		return "application/problem+json"
	}
	return echo.MIMEApplicationJSON
}
