package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
)

type completerCmd struct {
	completerFlags
	phaseFlags
	stripeFlags

	DBMaxConns  int32 `env:"DB_MAX_CONNS" default:"4" help:"Most database connections the process opens."`
	MetricsPort int   `env:"METRICS_PORT" default:"0" help:"Port serving GET /metrics (0: none)."`
}

// completerFlags configure the completer, alone or in all.
type completerFlags struct {
	CompleterGrace            time.Duration `env:"COMPLETER_GRACE" default:"5m" help:"How old an unfinished key must be before the completer drives it; until then its client is expected to retry."`
	CompleterInterval         time.Duration `env:"COMPLETER_INTERVAL" default:"5s" help:"Pause after a pass that found fewer keys than a full batch."`
	CompleterLastRunThreshold time.Duration `env:"COMPLETER_LAST_RUN_THRESHOLD" default:"60s" help:"How long after its last run a key is left alone; doubles with each run of the key."`
}

func (f *completerFlags) completer(pool *pgxpool.Pool, creator *rides.Creator, lockTimeout time.Duration, m *metrics.Metrics, logger *slog.Logger) *jobs.Completer {
	return jobs.NewCompleter(pool, creator, &jobs.CompleterConfig{
		Grace:            f.CompleterGrace,
		Interval:         f.CompleterInterval,
		LastRunThreshold: f.CompleterLastRunThreshold,
		LockTimeout:      lockTimeout,
		OutcomeFunc:      m.CompleterOutcome,
	}, logger)
}

func (c *completerCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("completer")
	pool, err := g.pool(ctx, c.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	m := metrics.New()
	creator, err := newCreator(ctx, g, pool, &c.phaseFlags, &c.stripeFlags, false, m, logger)
	if err != nil {
		return err
	}
	serveMetrics(ctx, c.MetricsPort, m, logger)
	c.completer(pool, creator, c.LockTimeout, m, logger).Start(ctx)
	return nil
}
