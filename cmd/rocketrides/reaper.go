package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
)

type reaperCmd struct {
	reaperFlags

	DBMaxConns  int32 `env:"DB_MAX_CONNS" default:"2" help:"Most database connections the process opens."`
	MetricsPort int   `env:"METRICS_PORT" default:"0" help:"Port serving GET /metrics (0: none)."`
}

// reaperFlags configure the reaper, alone or in all.
type reaperFlags struct {
	ReaperHorizon  time.Duration `env:"REAPER_HORIZON" default:"72h" help:"How old a key must be to be deleted, finished or not."`
	ReaperInterval time.Duration `env:"REAPER_INTERVAL" default:"5s" help:"Pause after a pass that deleted fewer keys than a full batch."`
}

func (f *reaperFlags) reaper(pool *pgxpool.Pool, m *metrics.Metrics, logger *slog.Logger) *jobs.Reaper {
	return jobs.NewReaper(pool, &jobs.ReaperConfig{
		Horizon:    f.ReaperHorizon,
		Interval:   f.ReaperInterval,
		ReapedFunc: m.KeysReaped,
	}, logger)
}

func (c *reaperCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("reaper")
	pool, err := g.pool(ctx, c.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	m := metrics.New()
	serveMetrics(ctx, c.MetricsPort, m, logger)
	c.reaper(pool, m, logger).Start(ctx)
	return nil
}
