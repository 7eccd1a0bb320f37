package main

import (
	"context"
	"net"
	"strconv"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
)

type apiCmd struct {
	adminFlags
	apiFlags
	phaseFlags
	stripeFlags

	DBMaxConns int32 `env:"DB_MAX_CONNS" default:"16" help:"Most database connections the process opens."`
}

// apiFlags say where the API listens, alone or in all.
type apiFlags struct {
	APIHost string `env:"API_HOST" default:"127.0.0.1" help:"Address the API listens on (0.0.0.0 for every interface)."`
	APIPort int    `env:"API_PORT" default:"5000" help:"Port the API listens on."`
}

func (f *apiFlags) addr() string {
	return net.JoinHostPort(f.APIHost, strconv.Itoa(f.APIPort))
}

func (c *apiCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("api")
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
	// Insert-only (no workers): River UI's view of the jobs.
	riverClient, err := jobs.NewRiverClient(pool, nil, logger)
	if err != nil {
		return err
	}
	adminServer, err := c.startAdmin(ctx, riverClient, m, logger)
	if err != nil {
		return err
	}
	defer adminServer.Stop()
	server := api.NewServer(creator, api.Config{Logger: logger, Metrics: m, Ready: pool.Ping})
	return api.Serve(ctx, c.addr(), server, logger)
}
