package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
)

type allCmd struct {
	adminFlags
	apiFlags
	completerFlags
	enqueuerFlags
	phaseFlags
	reaperFlags
	simulatorFlags
	stripeFlags

	DBMaxConns  int32 `env:"DB_MAX_CONNS" default:"24" help:"Most database connections the process opens, for all its parts."`
	NoSimulator bool  `help:"Run everything but the simulator."`
}

// Run seeds the demo users, then runs every process in this one, as the
// original's Procfile did, until ctx is done; then it stops them all: the API finishes the requests in
// flight, the background services finish the key or batch at hand, and
// River lets running jobs finish. If one part fails (the API's port is
// taken), the others stop too.
func (c *allCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("all")
	pool, err := g.pool(ctx, c.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	m := metrics.New()
	creator, err := newCreator(ctx, g, pool, &c.phaseFlags, &c.stripeFlags, true, m, g.logger("api"))
	if err != nil {
		return err
	}
	river, err := jobs.NewRiverClient(pool, &jobs.RiverClientConfig{ReceiptSentFunc: m.ReceiptSent, Work: true}, g.logger("worker"))
	if err != nil {
		return err
	}
	if err := river.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting River: %w", err)
	}
	defer stopRiver(river, g.logger("worker"))
	adminServer, err := c.startAdmin(ctx, river, m, g.logger("admin"))
	if err != nil {
		return err
	}
	defer adminServer.Stop()

	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error {
		server := api.NewServer(creator, api.Config{Logger: g.logger("api"), Metrics: m, Ready: pool.Ping})
		return api.Serve(ctx, c.addr(), server, g.logger("api"))
	})
	services := map[string]func(context.Context){
		"completer": c.completer(pool, creator, c.LockTimeout, m, g.logger("completer")).Start,
		"enqueuer":  c.enqueuer(pool, river, m, g.logger("enqueuer")).Start,
		"reaper":    c.reaper(pool, m, g.logger("reaper")).Start,
	}
	if !c.NoSimulator {
		simulator, err := c.simulator("http://"+c.addr(), 0, g.logger("simulator"))
		if err != nil {
			return err
		}
		services["simulator"] = func(ctx context.Context) {
			if waitHealthy(ctx, "http://"+c.addr()+"/healthz") && simulator.Start(ctx) == nil {
				<-ctx.Done()
				simulator.Stop()
			}
		}
	}
	for name, start := range services {
		group.Go(func() error {
			start(ctx)
			g.logger(name).InfoContext(ctx, name+": stopped")
			return nil
		})
	}
	logger.InfoContext(ctx, "all: running", slog.String("api", "http://"+c.addr()), slog.Bool("simulator", !c.NoSimulator))
	return group.Wait()
}

// waitHealthy polls url until it answers 200, for up to ten seconds, and
// reports whether it did.
func waitHealthy(ctx context.Context, url string) bool {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		response, err := client.Get(url)
		if err == nil {
			response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
