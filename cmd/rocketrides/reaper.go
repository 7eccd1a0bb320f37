package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/jobs"
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

// reaper builds the reaper on p's pool, logging to logger.
func (f *reaperFlags) reaper(p *process, logger *slog.Logger) (*jobs.Reaper, error) {
	return jobs.NewReaper(p.pool, &jobs.ReaperConfig{
		Horizon:    f.ReaperHorizon,
		Interval:   f.ReaperInterval,
		Logger:     logger,
		ReapedFunc: p.metrics.KeysReaped,
	})
}

// Run deletes old keys until ctx is done.
func (c *reaperCmd) Run(ctx context.Context, g *Globals) error {
	p, err := newProcess(ctx, g, &processConfig{maxConns: c.DBMaxConns, name: "reaper"})
	if err != nil {
		return err
	}
	defer p.close()
	reaper, err := c.reaper(p, p.logger)
	if err != nil {
		return err
	}
	p.serveMetrics(ctx, c.MetricsPort)
	return runService(ctx, reaper)
}
