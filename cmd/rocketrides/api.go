package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/rides"
)

type apiCmd struct {
	adminFlags
	apiFlags
	phaseFlags
	stripeFlags

	AuthMode   string `env:"AUTH_MODE" default:"api_key" enum:"api_key,demo" help:"How requests authenticate: api_key (Authorization: Bearer <key>, for production) or demo (the user's email)."`
	DBMaxConns int32  `env:"DB_MAX_CONNS" default:"16" help:"Most database connections the process opens."`
}

// apiFlags say where the API listens, alone or in all.
type apiFlags struct {
	APIHost string `env:"API_HOST" default:"127.0.0.1" help:"Address the API listens on (0.0.0.0 for every interface)."`
	APIPort int    `env:"API_PORT" default:"5000" help:"Port the API listens on."`

	RequestDeadline time.Duration `env:"REQUEST_DEADLINE" default:"40s" help:"How long a request may work once it holds its key, whatever its client does; above STRIPE_TIMEOUT plus DB_TX_TIMEOUT twice, under LOCK_TIMEOUT."`

	APIAdmissionWait time.Duration `env:"API_ADMISSION_WAIT" default:"50ms" help:"How long a request waits for an API_MAX_WORKING place before it answers 503 overloaded."`
	APIMaxInFlight   int           `env:"API_MAX_IN_FLIGHT" default:"64" help:"Most POST /rides requests in the server at once; the rest answer 503 overloaded at once."`
	APIMaxWorking    int           `env:"API_MAX_WORKING" default:"32" help:"Most requests running the workflow at once (replays of finished keys do not count)."`

	APIIdleTimeout time.Duration `env:"API_IDLE_TIMEOUT" default:"15s" help:"How long a keep-alive connection may wait for its next request before the API closes it."`

	APIShutdownTimeout time.Duration `env:"API_SHUTDOWN_TIMEOUT" help:"How long shutdown lets requests in flight finish before it ends them (default: REQUEST_DEADLINE plus 5s)."`
}

// serverConfig is the API server's configuration.
func (f *apiFlags) serverConfig(p *process, logger *slog.Logger) *api.ServerConfig {
	return &api.ServerConfig{
		AdmissionWait:   f.APIAdmissionWait,
		IdleTimeout:     f.APIIdleTimeout,
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

// apiKeysOut is where seedUsers prints the demo users' new API keys: stdout
// in api_key mode; nowhere (nil) in demo mode, which needs none.
func apiKeysOut(mode rides.AuthMode) io.Writer {
	if mode == rides.AuthModeAPIKey {
		return os.Stdout
	}
	return nil
}

// logAuthMode announces how the API authenticates; demo mode with a
// warning, since anyone who knows a rider's email can charge the rider.
func logAuthMode(ctx context.Context, logger *slog.Logger, mode rides.AuthMode) {
	if mode == rides.AuthModeDemo {
		logger.WarnContext(ctx, "api: AUTH_MODE=demo: anyone who knows a rider's email can charge their card; not for production (use AUTH_MODE=api_key)")
		return
	}
	logger.InfoContext(ctx, "api: authenticating with API keys", slog.String("auth_mode", string(mode)))
}

// Run serves the API until ctx is done. With the built-in Stripe fake it
// first seeds the demo users in it.
func (c *apiCmd) Run(ctx context.Context, g *Globals) error {
	stripe, fake, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{authMode: c.AuthMode, maxConns: c.DBMaxConns, name: "api", phase: &c.phaseFlags, stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	if fake {
		if err := seedUsers(ctx, p.pool, p.stripe, g.logger("seed"), apiKeysOut(p.creator.AuthMode())); err != nil {
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
	logAuthMode(ctx, p.logger, p.creator.AuthMode())
	return api.Serve(ctx, c.addr(), server)
}
