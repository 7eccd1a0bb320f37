package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rocketrides/rocketrides/jobs"
)

// riverStopTimeout is how long a stopping process waits for River's running
// jobs to finish before it cancels them.
const riverStopTimeout = 10 * time.Second

type enqueuerCmd struct {
	enqueuerFlags

	DBMaxConns  int32 `env:"DB_MAX_CONNS" default:"16" help:"Most database connections the process opens."`
	MetricsPort int   `env:"METRICS_PORT" default:"0" help:"Port serving GET /metrics (0: none)."`
}

// enqueuerFlags configure the enqueuer, alone or in all.
type enqueuerFlags struct {
	EnqueuerInterval time.Duration `env:"ENQUEUER_INTERVAL" default:"5s" help:"Pause after a pass that did not find a full batch of staged jobs."`
}

// enqueuer builds the enqueuer on p's pool, inserting with client and
// logging to logger.
func (f *enqueuerFlags) enqueuer(p *process, client *river.Client[pgx.Tx], logger *slog.Logger) (*jobs.Enqueuer, error) {
	return jobs.NewEnqueuer(p.pool, client, &jobs.EnqueuerConfig{
		Interval:         f.EnqueuerInterval,
		JobsEnqueuedFunc: p.metrics.JobsEnqueued,
		Logger:           logger,
	})
}

// newRiver builds the River client that works jobs, on p's pool. The
// caller starts it with startRiver and stops it with stopRiver.
func newRiver(p *process, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	return jobs.NewRiverClient(p.pool, &jobs.RiverClientConfig{Logger: logger, ReceiptSentFunc: p.metrics.ReceiptSent, Work: true})
}

// startRiver starts client. River's context is not ctx: cancelling it would
// cancel running jobs at once; stopRiver stops River gently.
func startRiver(ctx context.Context, client *river.Client[pgx.Tx]) error {
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting River: %w", err)
	}
	return nil
}

// Run moves staged jobs into River and works them (sends the receipts) in
// the same process, until ctx is done.
func (c *enqueuerCmd) Run(ctx context.Context, g *Globals) error {
	p, err := newProcess(ctx, g, &processConfig{maxConns: c.DBMaxConns, name: "enqueuer"})
	if err != nil {
		return err
	}
	defer p.close()
	client, err := newRiver(p, p.logger)
	if err != nil {
		return err
	}
	enqueuer, err := c.enqueuer(p, client, p.logger)
	if err != nil {
		return err
	}
	if err := startRiver(ctx, client); err != nil {
		return err
	}
	defer stopRiver(client, p.logger)
	p.serveMetrics(ctx, c.MetricsPort)
	return runService(ctx, enqueuer)
}

// stopRiver stops client, letting its running jobs finish for up to
// riverStopTimeout and then cancelling them.
func stopRiver(client *river.Client[pgx.Tx], logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), riverStopTimeout)
	defer cancel()
	if err := client.Stop(ctx); err == nil {
		return
	}
	logger.Warn("river: jobs did not finish in time; cancelling them", slog.Duration("timeout", riverStopTimeout))
	hardCtx, hardCancel := context.WithTimeout(context.Background(), riverStopTimeout)
	defer hardCancel()
	if err := client.StopAndCancel(hardCtx); err != nil {
		logger.Error("river: client did not stop", slog.String("error", oneLine(err)))
	}
}
