package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
)

// Errors the handlers return before any domain code runs.
var (
	errAuthInvalid  = problem.New(http.StatusUnauthorized, "auth-invalid", "Credentials in Authorization were invalid.")
	errAuthRequired = problem.New(http.StatusUnauthorized, "auth-required", "Please specify credentials in the Authorization header.")
	errBodyTooLarge = problem.New(http.StatusRequestEntityTooLarge, "body-too-large", "The request body must be at most 64 KiB.")
	errNotReady     = problem.New(http.StatusServiceUnavailable, "not-ready", "The database is not reachable.")
	errOverloaded   = problem.New(http.StatusServiceUnavailable, "overloaded",
		"The server is at capacity and did not start this request; nothing was recorded. Please retry with the same Idempotency-Key.")
	errUnsupportedMediaType = problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "Send the body as application/x-www-form-urlencoded or application/json.")
)

// Why a request's work ended before its definitive response: they wrap the
// domain code's error (see workError).
var (
	errRequestDeadline = errors.New("request deadline exceeded")
	errShuttingDown    = errors.New("server shutting down")
)

// Retry-After values, in seconds.
const (
	retryAfterConflict = 1
	// A shed request is told to come back after 1 to
	// retryAfterOverloadedMax seconds, drawn at random, so the clients
	// shed by one burst do not all return in the same instant as a new
	// burst.
	retryAfterOverloadedMax = 3
	retryAfterInProgress    = 2
	retryAfterRidePending   = 5
	retryAfterUnavailable   = 5
)

// messageInternal is the detail of every 500: the request can be retried,
// and the client should.
const messageInternal = "Internal server error. Please retry the request periodically with the same Idempotency-Key until it succeeds."

// handleError is the one place where an error becomes a response. Client
// mistakes and expected conditions are logged at info; anything else is
// logged at error and answered with a 500 that reveals nothing of it.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	details, retryAfter := s.problemFor(c.Request().Context(), err)
	if retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if details.Status == http.StatusUnauthorized && s.creator.AuthMode() == rides.AuthModeAPIKey {
		// The challenge RFC 9110 asks of a 401, naming the scheme expected.
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="rocketrides"`)
	}
	body, _ := json.Marshal(details) // a Details always marshals
	if err := c.Blob(details.Status, problem.ContentType, body); err != nil {
		s.logger.WarnContext(c.Request().Context(), "api: writing error response", slog.String("error", err.Error()))
	}
}

// problemFor maps err to a problem and a Retry-After in seconds (0 for
// none).
func (s *Server) problemFor(ctx context.Context, err error) (*problem.Details, int) {
	var (
		details    *problem.Details
		httpErr    *echo.HTTPError
		paramErr   *ParamError
		ambiguous  errAmbiguousHeader
		keyErr     errKey
		problemErr *problem.Details
	)
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled) && !errors.Is(err, errShuttingDown):
		// The client hung up while the request read the database before it
		// held a key: nothing to answer, and nobody to answer it to.
		s.logger.InfoContext(ctx, "api: client hung up", slog.String("error", err.Error()))
		return problem.New(StatusClientClosedRequest, "client-closed-request", "The client closed the connection."), 0
	case errors.Is(err, errOverloaded):
		return errOverloaded, 1 + rand.IntN(retryAfterOverloadedMax)
	case errors.As(err, &problemErr):
		return problemErr, 0
	case errors.As(err, &ambiguous):
		return problem.New(http.StatusBadRequest, "ambiguous-header", ambiguous.Error()), 0
	case errors.As(err, &keyErr):
		return problem.New(http.StatusBadRequest, "invalid-idempotency-key", keyErr.Error()), 0
	case errors.As(err, &paramErr):
		return problem.New(http.StatusUnprocessableEntity, "invalid-parameter", paramErr.Message), 0
	case errors.Is(err, errBodyUnreadable):
		s.logger.InfoContext(ctx, "api: request body unreadable", slog.String("error", err.Error()))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return problem.New(http.StatusRequestTimeout, "request-timeout", "The request body did not arrive within the server's read timeout."), 0
		}
		return problem.New(http.StatusBadRequest, "malformed-body",
			"The request body could not be read: it ended before its Content-Length, or its chunked encoding is malformed or cut short."), 0
	case errors.Is(err, errMalformedJSON):
		return problem.New(http.StatusBadRequest, "malformed-body", "The request body must be a JSON object."), 0
	case errors.Is(err, errMalformedForm):
		return problem.New(http.StatusBadRequest, "malformed-body", "The request body must be a valid form (application/x-www-form-urlencoded)."), 0
	case errors.Is(err, rides.ErrUnauthenticated):
		// The reason goes to the log only: the client learns nothing of
		// which emails or keys exist.
		s.logger.InfoContext(ctx, "api: authentication failed", slog.String("error", err.Error()))
		return errAuthInvalid, 0
	case errors.Is(err, idempotency.ErrParamsMismatch):
		return problem.New(http.StatusUnprocessableEntity, "idempotency-key-reused",
			"There was a mismatch between this request's parameters and the parameters of a previously stored request with the same Idempotency-Key."), 0
	case errors.Is(err, idempotency.ErrRequestInProgress):
		return problem.New(http.StatusConflict, "request-in-progress",
			"An API request with the same Idempotency-Key is already in progress."), retryAfterInProgress
	case errors.Is(err, idempotency.ErrConflict), errors.Is(err, idempotency.ErrLockLost):
		s.logger.InfoContext(ctx, "api: conflict", slog.String("error", err.Error()))
		return problem.New(http.StatusConflict, "conflict",
			"Conflict detected with a concurrent request. Please retry with the same Idempotency-Key."), retryAfterConflict
	case errors.Is(err, rides.ErrRideNotFound):
		return rides.NewProblemRideNotFound(), 0
	case errors.Is(err, rides.ErrRidePending):
		return problem.New(http.StatusConflict, "ride-pending",
			"The ride's payment is not settled yet. Please retry with the same Idempotency-Key."), retryAfterRidePending
	case errors.Is(err, errShuttingDown):
		s.logger.WarnContext(ctx, "api: request ended by shutdown", slog.String("error", err.Error()))
		return problem.New(http.StatusServiceUnavailable, "shutting-down",
			"The server is shutting down; this request's key was released. Please retry with the same Idempotency-Key."), retryAfterUnavailable
	case errors.Is(err, errRequestDeadline):
		s.logger.WarnContext(ctx, "api: request deadline exceeded", slog.String("error", err.Error()))
		return problem.New(http.StatusServiceUnavailable, "request-deadline",
			"The request did not finish within the server's deadline; its key was released. Please retry with the same Idempotency-Key."), retryAfterUnavailable
	case errors.Is(err, rides.ErrPaymentUnavailable):
		s.logger.WarnContext(ctx, "api: payment processor unavailable", slog.String("error", err.Error()))
		return problem.New(http.StatusServiceUnavailable, "payment-unavailable",
			"The payment processor could not be reached. Please retry with the same Idempotency-Key."), retryAfterUnavailable
	case db.IsUnavailable(err):
		s.logger.WarnContext(ctx, "api: database unavailable", slog.String("error", err.Error()))
		return problem.New(http.StatusServiceUnavailable, "database-unavailable",
			"The database did not answer in time; whatever this request did is kept. Please retry with the same Idempotency-Key."), retryAfterUnavailable
	case errors.As(err, &httpErr):
		details = problem.New(httpErr.Code, "http", http.StatusText(httpErr.Code))
		if httpErr.Code == http.StatusNotFound {
			details.Type = problem.TypeBase + "not-found"
		} else if httpErr.Code == http.StatusMethodNotAllowed {
			details.Type = problem.TypeBase + "method-not-allowed"
		}
		return details, 0
	case errors.Is(err, rides.ErrSimulatedFailure):
		s.logger.InfoContext(ctx, "api: simulated failure", slog.String("error", err.Error()))
	default:
		s.logger.ErrorContext(ctx, "api: internal error", slog.String("error", err.Error()))
	}
	return problem.New(http.StatusInternalServerError, "internal", messageInternal), 0
}
