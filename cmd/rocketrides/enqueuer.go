package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
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

func (f *enqueuerFlags) enqueuer(pool *pgxpool.Pool, client *river.Client[pgx.Tx], m *metrics.Metrics, logger *slog.Logger) *jobs.Enqueuer {
	return jobs.NewEnqueuer(pool, client, &jobs.EnqueuerConfig{
		Interval:         f.EnqueuerInterval,
		JobsEnqueuedFunc: m.JobsEnqueued,
	}, logger)
}

// Run moves staged jobs into River and works them (sends the receipts) in
// the same process, until ctx is done.
func (c *enqueuerCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("enqueuer")
	pool, err := g.pool(ctx, c.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	m := metrics.New()
	serveMetrics(ctx, c.MetricsPort, m, logger)

	client, err := jobs.NewRiverClient(pool, &jobs.RiverClientConfig{ReceiptSentFunc: m.ReceiptSent, Work: true}, logger)
	if err != nil {
		return err
	}
	// River's context is not ctx: cancelling it would cancel running jobs
	// at once. stopRiver stops River gently once the enqueuer has stopped.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	defer stopRiver(client, logger)

	logger.InfoContext(ctx, "enqueuer: started", slog.Duration("interval", c.EnqueuerInterval))
	c.enqueuer(pool, client, m, logger).Start(ctx)
	return nil
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
