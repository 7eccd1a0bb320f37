package stripefake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// apiVersion is the Stripe API version whose wire format the fake
// speaks: the one stripe-go v76 pins.
const apiVersion = "2023-10-16"

// Config configures a [Server]. The zero Config is a well-behaved fake.
type Config struct {
	// Latency is how long each charge and refund request takes. A
	// creation holds its Idempotency-Key for that long, so that requests
	// with the same key arriving meanwhile get 409 idempotency_key_in_use,
	// as on Stripe. Replays and rejections of the key are answered at
	// once.
	Latency time.Duration

	// FailBeforeRate is the fraction of charge and refund creations that
	// answer 500 api_error without recording anything: a retry with the
	// same Idempotency-Key is then carried out afresh.
	FailBeforeRate float64

	// FailAfterRate is the fraction of charge and refund creations that
	// record their outcome (the charge or refund, and the response kept
	// under the Idempotency-Key), then answer 500 api_error anyway, as if
	// the response had been lost: a retry with the same key then replays
	// the real response.
	//
	// The two rates share one random draw per creation, so at most one
	// kind of failure strikes, and FailAfterRate gets only what
	// FailBeforeRate leaves of 1. A rate of 0 never fails, one of 1
	// always does.
	FailAfterRate float64

	// Seed seeds the random source of the failures, so that a seed and a
	// sequence of creation requests always give the same failures.
	Seed int64

	// Logger, if set, gets a line at debug level for each request, and
	// lines at higher levels for injected failures, and (from Serve) one
	// when it has started, with its settings, and one when it has stopped. Nothing is logged if it is nil.
	Logger *slog.Logger
}

// Server is a fake Stripe API. It is an [http.Handler], safe for
// concurrent use, that keeps its state in memory for its whole life.
type Server struct {
	config Config
	logger *slog.Logger
	mux    *http.ServeMux
	store  *store
	keys   *idempotencyKeys
	faults *faultInjector

	chargeRequests atomic.Int64
	refundRequests atomic.Int64
}

// New returns a Server with no customers, no charges and no refunds.
func New(config Config) *Server {
	logger := config.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		config: config,
		logger: logger,
		mux:    http.NewServeMux(),
		store:  newStore(),
		keys:   newIdempotencyKeys(),
		faults: newFaultInjector(config),
	}
	s.mux.HandleFunc("POST /v1/customers", s.handleCreateCustomer)
	s.mux.HandleFunc("GET /v1/customers/{id}", s.handleGetCustomer)
	s.mux.HandleFunc("POST /v1/charges", s.handleCreateCharge)
	s.mux.HandleFunc("GET /v1/charges", s.handleListCharges)
	s.mux.HandleFunc("GET /v1/charges/{id}", s.handleGetCharge)
	s.mux.HandleFunc("POST /v1/refunds", s.handleCreateRefund)
	s.mux.HandleFunc("GET /v1/refunds", s.handleListRefunds)
	s.mux.HandleFunc("GET /v1/refunds/{id}", s.handleGetRefund)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		send(w, unrecognizedURL(r).response())
	})
	return s
}

// ServeHTTP answers a request to Stripe's API. Every answer carries a
// Request-Id header; requests without an API key get 401.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	requestID := newID("req_", requestIDLength)
	w.Header().Set("Request-Id", requestID)
	w.Header().Set("Stripe-Version", stripeVersion(r))
	recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}

	if apiKey(r) == "" {
		send(recorder, missingAPIKey().response())
	} else {
		s.mux.ServeHTTP(recorder, r)
	}

	s.logger.LogAttrs(r.Context(), slog.LevelDebug, "stripe-fake: request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", recorder.status),
		slog.String("request_id", requestID),
		slog.String("idempotency_key", r.Header.Get("Idempotency-Key")),
		slog.Bool("idempotent_replayed", w.Header().Get("Idempotent-Replayed") == "true"),
		slog.Duration("duration", time.Since(start)),
	)
}

// Charges returns a copy of all charges created so far, oldest first,
// declined ones included.
func (s *Server) Charges() []Charge {
	return s.store.snapshot()
}

// ChargeRequests returns how many POST /v1/charges requests have arrived,
// whatever became of them: created, declined, replayed, rejected or
// failed.
func (s *Server) ChargeRequests() int {
	return int(s.chargeRequests.Load())
}

// Refunds returns a copy of all refunds created so far, oldest first.
func (s *Server) Refunds() []Refund {
	return s.store.refundSnapshot()
}

// RefundRequests returns how many POST /v1/refunds requests have arrived,
// whatever became of them: created, replayed, rejected or failed.
func (s *Server) RefundRequests() int {
	return int(s.refundRequests.Load())
}

// SetFailureRates changes Config.FailBeforeRate and Config.FailAfterRate
// for the charge and refund creations that arrive from now on, for
// instance to make Stripe fail and then recover in the middle of a test.
func (s *Server) SetFailureRates(failBeforeRate, failAfterRate float64) {
	s.faults.setRates(failBeforeRate, failAfterRate)
}

// beginWrite parses the parameters of a POST request and claims its
// Idempotency-Key. If the request needs nothing more (its body is
// malformed, its key is in use or was used with other parameters, or its
// key replays a kept response), beginWrite answers it and returns ok
// false. Otherwise the caller carries the request out, and must release
// the claim when done.
func (s *Server) beginWrite(w http.ResponseWriter, r *http.Request) (form url.Values, claim *keyClaim, ok bool) {
	form, err := parseForm(r)
	if err != nil {
		send(w, err.response())
		return nil, nil, false
	}

	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		w.Header().Set("Idempotency-Key", key)
	}
	claim, replay, err := s.keys.claim(key, requestFingerprint(r, form), w.Header().Get("Request-Id"))
	switch {
	case err != nil:
		send(w, err.response())
		return nil, nil, false
	case replay != nil:
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Original-Request", replay.requestID)
		send(w, *replay.saved)
		return nil, nil, false
	}
	return form, claim, true
}

// serveCreate serves a creation request (a charge or a refund) with
// create, which validates the request's parameters and carries it out,
// given the request's idempotency key. The request takes Config.Latency,
// holding its idempotency key meanwhile, and may be failed as the failure
// rates say, before or after create.
func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, create func(form url.Values, idempotencyKey string) (response, *stripeError)) {
	form, claim, ok := s.beginWrite(w, r)
	if !ok {
		return
	}
	defer claim.release()

	// Stripe's processing time, during which the key stays claimed. It is
	// not cut short when the client gives up: neither is Stripe's.
	time.Sleep(s.config.Latency)

	fault := s.faults.next()
	if fault == failBefore {
		s.sendFault(w, r, fault)
		return
	}
	outcome, rejection := create(form, claim.key)
	if rejection != nil {
		send(w, rejection.response())
		return
	}
	claim.remember(outcome)
	if fault == failAfter {
		s.sendFault(w, r, fault)
		return
	}
	send(w, outcome)
}

// sendFault answers a creation request with an injected failure.
func (s *Server) sendFault(w http.ResponseWriter, r *http.Request, f fault) {
	s.logger.LogAttrs(r.Context(), slog.LevelWarn, "stripe-fake: injected failure",
		slog.String("request_id", w.Header().Get("Request-Id")),
		slog.String("fault", f.String()),
	)
	send(w, injectedFailure(f).response())
}

// apiKey returns the API key of r, given as Stripe takes it: as a Bearer
// token, or as the user name of Basic auth (curl -u sk_test_...:).
func apiKey(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		return user
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(token)
}

// stripeVersion returns the API version to answer r with: the one r asks
// for, or the fake's own.
func stripeVersion(r *http.Request) string {
	if version := r.Header.Get("Stripe-Version"); version != "" {
		return version
	}
	return apiVersion
}

// statusRecorder remembers the status a handler answered with, for the
// request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Timeouts of the HTTP server that Serve runs.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second // on top of Config.Latency
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
)

// Serve serves s on listener until ctx is cancelled, then shuts down
// gracefully, letting requests in progress finish. It returns nil after
// a graceful shutdown.
func (s *Server) Serve(ctx context.Context, listener net.Listener) error {
	httpServer := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout + s.config.Latency,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}

	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(listener) }()
	s.logger.Info("stripe-fake: started",
		slog.String("addr", listener.Addr().String()),
		slog.Duration("latency", s.config.Latency),
		slog.Float64("fail_before_rate", s.config.FailBeforeRate),
		slog.Float64("fail_after_rate", s.config.FailAfterRate),
		slog.Int64("seed", s.config.Seed),
	)

	select {
	case err := <-served:
		return fmt.Errorf("stripefake: serve on %s: %w", listener.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("stripefake: shut down server on %s: %w", listener.Addr(), err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stripefake: serve on %s: %w", listener.Addr(), err)
	}
	s.logger.Info("stripe-fake: stopped")
	return nil
}

// ListenAndServe serves a new fake, configured by config, on the TCP
// address addr until ctx is cancelled, then shuts down gracefully. It is
// meant for local runs, where the fake stands in for api.stripe.com.
func ListenAndServe(ctx context.Context, addr string, config Config) error {
	var listenConfig net.ListenConfig
	listener, err := listenConfig.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("stripefake: listen on %s: %w", addr, err)
	}
	return New(config).Serve(ctx, listener)
}
