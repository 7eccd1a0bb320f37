package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
)

// stripeStack is a Stripe fake served on a loopback port, a client of it,
// and the users whose customers it knows.
type stripeStack struct {
	client  *stripeclient.Client
	conns   *countingListener
	fake    *stripefake.Server
	latency time.Duration
	users   []*db.User
}

// startStripe serves a fake with the given latency until ctx is done and
// seeds numUsers users, named after label, with customers in it. Each charge
// is reported to counter as a call by the request of the customer's user.
func startStripe(ctx context.Context, pool *pgxpool.Pool, counter *dbCounter, label string, latency time.Duration, numUsers int) (*stripeStack, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the Stripe fake: %w", err)
	}
	conns := &countingListener{Listener: listener}
	fake := stripefake.New(stripefake.Config{Latency: latency})
	var customers atomic.Pointer[map[string]string] // customer id → user's email, once seeded
	server := &http.Server{Handler: reportCharges(fake, counter, &customers), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.ErrorContext(ctx, "bench: Stripe fake stopped", slog.String("error", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()

	client, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: "http://" + listener.Addr().String(), APIKey: "sk_test_bench"})
	if err != nil {
		return nil, err
	}
	stack := &stripeStack{
		client:  client,
		conns:   conns,
		fake:    fake,
		latency: latency,
	}
	emails := make(map[string]string)
	for i := range numUsers {
		email := fmt.Sprintf("bench-%s-%02d@rocketrides.test", label, i)
		customerID, err := stack.client.CustomerCreate(ctx, email, "tok_visa")
		if err != nil {
			return nil, fmt.Errorf("creating customer for %s: %w", email, err)
		}
		user, err := db.New().UserUpsert(ctx, pool, &db.UserUpsertParams{Email: email, StripeCustomerID: customerID})
		if err != nil {
			return nil, fmt.Errorf("inserting user %s: %w", email, err)
		}
		emails[customerID] = email
		stack.users = append(stack.users, user)
	}
	customers.Store(&emails)
	return stack, nil
}

// reportCharges serves fake, reporting each charge request to counter as a
// call by the request of the charged customer's user.
func reportCharges(fake http.Handler, counter *dbCounter, customers *atomic.Pointer[map[string]string]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if emails := customers.Load(); emails != nil && r.Method == http.MethodPost && r.URL.Path == "/v1/charges" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body)) // the fake answers a malformed body itself
			counter.stripeCall((*emails)[form.Get("customer")])
		}
		fake.ServeHTTP(w, r)
	})
}

// user returns the user that worker sends requests as: each worker has its
// own while there are enough.
func (s *stripeStack) user(worker int) *db.User {
	return s.users[worker%len(s.users)]
}

// apiServer is the API, in process, on a loopback port.
type apiServer struct {
	conns  *countingListener
	server *http.Server
	url    string
}

// startAPI serves the API on a free loopback port, wired as
// cmd/rocketrides wires it: the pool, an engine at isolation, the Stripe
// client, Prometheus metrics, and a logger that formats every line at info
// as production does but writes it nowhere, to keep the terminal readable.
//
// Each request's context is marked with its user (withOwner), for the
// counter to know which request holds which connection.
func startAPI(pool *pgxpool.Pool, stripe *stripeclient.Client, isolation pgx.TxIsoLevel) (*apiServer, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New()
	engine, err := idempotency.NewEngine(pool, &idempotency.EngineConfig{
		Isolation:        isolation,
		Logger:           logger,
		ObservePhaseFunc: m.ObservePhase,
		RetriedFunc:      m.TxRetried,
	})
	if err != nil {
		return nil, err
	}
	creator, err := rides.NewCreator(pool, engine, stripe, &rides.CreatorConfig{AuthMode: rides.AuthModeDemo, Logger: logger})
	if err != nil {
		return nil, err
	}
	// Admit every client: the bench measures the engine against the limit
	// at each concurrency, not the shedding, which sheds at the defaults'
	// 64 requests in flight (chaos's burst and cmd's robustness tests
	// measure that).
	handler, err := api.NewServer(creator, &api.ServerConfig{Logger: logger, Metrics: m, Ready: pool.Ping, MaxInFlight: 1024, MaxWorking: 1024})
	if err != nil {
		return nil, err
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the API: %w", err)
	}
	conns := &countingListener{Listener: listener}
	// The timeouts of api.Serve.
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handler.ServeHTTP(w, r.WithContext(withOwner(r.Context(), r.Header.Get("Authorization"))))
		}),
		IdleTimeout:       2 * time.Minute,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      api.RequestTimeoutDefault + 5*time.Second,
	}
	go func() {
		if err := server.Serve(conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("bench: API server stopped", slog.String("error", err.Error()))
		}
	}()
	return &apiServer{conns: conns, server: server, url: "http://" + listener.Addr().String()}, nil
}

// close stops the server at once: the load generator has no request in
// flight between cells.
func (a *apiServer) close() {
	if err := a.server.Close(); err != nil {
		slog.Warn("bench: closing API server", slog.String("error", err.Error()))
	}
}

// accepted is how many connections the API accepted so far; none for a
// nil server.
func (a *apiServer) accepted() int64 {
	if a == nil {
		return 0
	}
	return a.conns.accepted.Load()
}

// countingListener counts the connections it accepts, to show whether
// clients keep their connections alive.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

// Accept accepts a connection and counts it.
func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}
