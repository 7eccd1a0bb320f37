package main

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/jobs"
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

	RequestDeadline time.Duration `env:"REQUEST_DEADLINE" default:"40s" help:"How long a request may work once it holds its key, whatever its client does; above STRIPE_TIMEOUT plus DB_TX_TIMEOUT twice, under LOCK_TIMEOUT."`

	APIAdmissionWait time.Duration `env:"API_ADMISSION_WAIT" default:"50ms" help:"How long a request waits for an API_MAX_WORKING place before it answers 503 overloaded."`
	APIMaxInFlight   int           `env:"API_MAX_IN_FLIGHT" default:"64" help:"Most POST /rides requests in the server at once; the rest answer 503 overloaded at once."`
	APIMaxWorking    int           `env:"API_MAX_WORKING" default:"32" help:"Most requests running the workflow at once (replays of finished keys do not count)."`

	APIShutdownTimeout time.Duration `env:"API_SHUTDOWN_TIMEOUT" help:"How long shutdown lets requests in flight finish before it ends them (default: REQUEST_DEADLINE plus 5s)."`
}

// serverConfig is the API server's configuration.
func (f *apiFlags) serverConfig(p *process, logger *slog.Logger) *api.ServerConfig {
	return &api.ServerConfig{
		AdmissionWait:   f.APIAdmissionWait,
		Logger:          logger,
		MaxInFlight:     f.APIMaxInFlight,
		MaxWorking:      f.APIMaxWorking,
		Metrics:         p.metrics,
		Ready:           p.pool.Ping,
		RequestDeadline: f.RequestDeadline,
		ShutdownTimeout: f.APIShutdownTimeout,
	}
}

func (f *apiFlags) addr() string {
	return net.JoinHostPort(f.APIHost, strconv.Itoa(f.APIPort))
}

// Run serves the API until ctx is done. With the built-in Stripe fake it
// first seeds the demo users in it.
func (c *apiCmd) Run(ctx context.Context, g *Globals) error {
	stripe, fake, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{maxConns: c.DBMaxConns, name: "api", phase: &c.phaseFlags, stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	if fake {
		if err := seedUsers(ctx, p.pool, p.stripe, g.logger("seed")); err != nil {
			return err
		}
	}
	// Insert-only (no workers): River UI's view of the jobs.
	riverClient, err := jobs.NewRiverClient(p.pool, &jobs.RiverClientConfig{Logger: p.logger})
	if err != nil {
		return err
	}
	adminServer, err := c.startAdmin(ctx, riverClient, p.metrics, g.logger("admin"))
	if err != nil {
		return err
	}
	defer adminServer.Stop()
	server, err := api.NewServer(p.creator, c.serverConfig(p, p.logger))
	if err != nil {
		return err
	}
	return api.Serve(ctx, c.addr(), server)
}
