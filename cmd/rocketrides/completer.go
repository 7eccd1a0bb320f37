package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/jobs"
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

// completer builds the completer on p's pool and the engine of p's creator,
// where every workflow is registered, logging to logger.
func (f *completerFlags) completer(p *process, logger *slog.Logger) (*jobs.Completer, error) {
	return jobs.NewCompleter(p.pool, p.creator.Engine(), &jobs.CompleterConfig{
		Grace:            f.CompleterGrace,
		Interval:         f.CompleterInterval,
		LastRunThreshold: f.CompleterLastRunThreshold,
		Logger:           logger,
		OutcomeFunc:      p.metrics.CompleterOutcome,
	})
}

// Run drives abandoned requests until ctx is done. With the built-in Stripe
// fake it first seeds the demo users in it.
func (c *completerCmd) Run(ctx context.Context, g *Globals) error {
	stripe, fake, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{maxConns: c.DBMaxConns, name: "completer", phase: &c.phaseFlags, stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	completer, err := c.completer(p, p.logger)
	if err != nil {
		return err
	}
	if fake {
		if err := seedUsers(ctx, p.pool, p.stripe, g.logger("seed")); err != nil {
			return err
		}
	}
	p.serveMetrics(ctx, c.MetricsPort)
	return runService(ctx, completer)
}
