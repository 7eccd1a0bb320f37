package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/migrations"
)

// Globals are the settings every subcommand shares.
type Globals struct {
	DatabaseURL string `env:"DATABASE_URL" default:"postgres://127.0.0.1:5432/rocketrides?sslmode=disable" help:"PostgreSQL connection URL."`
	LogFormat   string `env:"LOG_FORMAT" default:"text" enum:"text,json" help:"Log format: text or json."`
	LogLevel    string `env:"LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Lowest level logged: debug, info, warn or error."`

	dbFlags
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
	pool, err := db.NewPoolWithConfig(ctx, g.DatabaseURL, g.poolConfig(maxConns))
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

// phaseFlags configure the atomic phases.
type phaseFlags struct {
	LockTimeout             time.Duration `env:"LOCK_TIMEOUT" default:"90s" help:"How long a request's lock on its key holds before another request may take the key over."`
	PhaseIsolation          string        `env:"PHASE_ISOLATION" default:"read_committed" enum:"read_committed,serializable" help:"Isolation level of the phases' transactions: read_committed or serializable."`
	StripeIdempotencyWindow time.Duration `env:"STRIPE_IDEMPOTENCY_WINDOW" default:"24h" help:"How long Stripe remembers idempotency keys; a charge resumed later first looks for an earlier one."`
}
