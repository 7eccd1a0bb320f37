package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/migrations"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
)

// Globals are the settings every subcommand shares.
type Globals struct {
	DatabaseURL string `env:"DATABASE_URL" default:"postgres://127.0.0.1:5432/rocketrides?sslmode=disable" help:"PostgreSQL connection URL."`
	LogFormat   string `env:"LOG_FORMAT" default:"text" enum:"text,json" help:"Log format: text or json."`
	LogLevel    string `env:"LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Lowest level logged: debug, info, warn or error."`
}

// logger returns the process's logger; every line names the process.
func (g *Globals) logger(process string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(g.LogLevel)) // kong checked the enum
	options := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, options)
	if g.LogFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, options)
	}
	return slog.New(handler).With(slog.String("process", process))
}

// pool connects to the database and checks that it is migrated, so that a
// process fails at start-up, saying to run `rocketrides migrate up`, rather
// than at its first query.
func (g *Globals) pool(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	pool, err := db.NewPool(ctx, g.DatabaseURL, maxConns)
	if db.IsUndefinedDatabase(err) {
		return nil, fmt.Errorf("%w: run `rocketrides migrate up`, which creates it", err)
	}
	if err != nil {
		return nil, err
	}
	if err := migrations.CheckApplied(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// stripeFlags say where Stripe is.
type stripeFlags struct {
	StripeAPIBase string        `env:"STRIPE_API_BASE" default:"https://api.stripe.com" help:"Where Stripe is (for example a stripe-fake or stripe-mock)."`
	StripeAPIKey  string        `env:"STRIPE_API_KEY" help:"Stripe secret key. Unset: the process runs the built-in Stripe fake and uses it."`
	StripeTimeout time.Duration `env:"STRIPE_TIMEOUT" default:"20s" help:"Timeout of each call to Stripe; keep it well under LOCK_TIMEOUT."`
}

// client returns a Stripe client. Without an API key it starts the built-in
// fake, which lives as long as ctx, and reports fake as true.
func (f *stripeFlags) client(ctx context.Context, g *Globals, logger *slog.Logger) (client *stripeclient.Client, fake bool, err error) {
	if f.StripeAPIKey != "" {
		return stripeclient.New(stripeclient.Config{APIBase: f.StripeAPIBase, APIKey: f.StripeAPIKey, Timeout: f.StripeTimeout}), false, nil
	}
	baseURL, err := startStripeFake(ctx, stripefake.Config{}, g.logger("stripe-fake"))
	if err != nil {
		return nil, false, err
	}
	logger.WarnContext(ctx, "STRIPE_API_KEY is unset: using the built-in Stripe fake", slog.String("stripe_api_base", baseURL))
	return stripeclient.New(stripeclient.Config{APIBase: baseURL, APIKey: "sk_test_fake", Timeout: f.StripeTimeout}), true, nil
}

// startStripeFake serves the Stripe fake on a free loopback port until ctx
// is done and returns its base URL.
func startStripeFake(ctx context.Context, config stripefake.Config, logger *slog.Logger) (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening for the Stripe fake: %w", err)
	}
	config.Logger = logger
	server := &http.Server{Handler: stripefake.New(config), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	go func() { _ = server.Serve(listener) }()
	return "http://" + listener.Addr().String(), nil
}

// phaseFlags configure the atomic phases.
type phaseFlags struct {
	LockTimeout             time.Duration `env:"LOCK_TIMEOUT" default:"90s" help:"How long a request's lock on its key holds before another request may take the key over."`
	PhaseIsolation          string        `env:"PHASE_ISOLATION" default:"read_committed" enum:"read_committed,serializable" help:"Isolation level of the phases' transactions: read_committed or serializable."`
	StripeIdempotencyWindow time.Duration `env:"STRIPE_IDEMPOTENCY_WINDOW" default:"24h" help:"How long Stripe remembers idempotency keys; a charge resumed later first looks for an earlier one."`
}

// newCreator builds the ride workflow on pool, charging through the Stripe
// that stripe says. With the built-in fake, which starts empty, or when seed
// is set, it first makes sure the demo users have customers that this
// Stripe knows.
func newCreator(ctx context.Context, g *Globals, pool *pgxpool.Pool, phase *phaseFlags, stripe *stripeFlags, seed bool, m *metrics.Metrics, logger *slog.Logger) (*rides.Creator, error) {
	isolation, err := db.ParseIsolation(phase.PhaseIsolation)
	if err != nil {
		return nil, err
	}
	stripeClient, fake, err := stripe.client(ctx, g, logger)
	if err != nil {
		return nil, err
	}
	if fake || seed {
		if err := seedUsers(ctx, pool, stripeClient, logger); err != nil {
			return nil, err
		}
	}
	engine := idempotency.NewEngine(pool, idempotency.Config{
		Isolation:        isolation,
		LockTimeout:      phase.LockTimeout,
		Logger:           logger,
		ObservePhaseFunc: m.ObservePhase,
		RetriedFunc:      m.TxRetried,
	})
	return rides.NewCreator(pool, engine, stripeClient, rides.Config{
		Logger:                  logger,
		StripeIdempotencyWindow: phase.StripeIdempotencyWindow,
	}), nil
}

// serveMetrics serves m on port of the loopback interface until ctx is done;
// port 0 serves nothing.
func serveMetrics(ctx context.Context, port int, m *metrics.Metrics, logger *slog.Logger) {
	if port == 0 {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	server := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	go func() {
		if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			logger.ErrorContext(ctx, "metrics server failed", slog.String("error", err.Error()))
		}
	}()
}

// oneLine makes an error fit on one line: pgx lists each address it tried on
// a line of its own.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
