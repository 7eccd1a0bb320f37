package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/rides"
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

	AuthMode    string `env:"AUTH_MODE" default:"demo" enum:"api_key,demo" help:"How requests authenticate: demo (the user's email, the default here, not for production) or api_key (Authorization: Bearer <key>)."`
	DBMaxConns  int32  `env:"DB_MAX_CONNS" default:"24" help:"Most database connections the process opens, for all its parts."`
	NoSimulator bool   `help:"Run everything but the simulator."`
}

// Run runs every process in this one, as the original's Procfile did, until
// ctx is done; then it stops them all: the API finishes the requests in
// flight, the background services finish the key or batch at hand, and
// River lets running jobs finish. If one part fails (the API's port is
// taken), the others stop too.
//
// The steps, in order: Stripe (the built-in fake when STRIPE_API_KEY is
// unset), the process's pool, metrics and creator, the demo users seeded in
// that Stripe, every part built (a bad setting stops here), the background
// services, River's workers, the API and the simulator.
func (c *allCmd) Run(ctx context.Context, g *Globals) error {
	stripe, _, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{authMode: c.AuthMode, maxConns: c.DBMaxConns, name: "all", phase: &c.phaseFlags, stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	if err := seedUsers(ctx, p.pool, p.stripe, g.logger("seed"), apiKeysOut(p.creator.AuthMode())); err != nil {
		return err
	}
	server, err := api.NewServer(p.creator, c.serverConfig(p, g.logger("api")))
	if err != nil {
		return err
	}
	completer, err := c.completer(p, g.logger("completer"))
	if err != nil {
		return err
	}
	reaper, err := c.reaper(p, g.logger("reaper"))
	if err != nil {
		return err
	}
	river, err := newRiver(p, g.logger("worker"))
	if err != nil {
		return err
	}
	enqueuer, err := c.enqueuer(p, river, g.logger("enqueuer"))
	if err != nil {
		return err
	}
	var simulator *jobs.Simulator
	if !c.NoSimulator {
		apiKey, revoke, err := c.simulatorAPIKey(ctx, p)
		if err != nil {
			return err
		}
		defer revoke()
		if simulator, err = c.simulator("http://"+c.addr(), 0, apiKey, g.logger("simulator")); err != nil {
			return err
		}
	}

	logAuthMode(ctx, g.logger("api"), p.creator.AuthMode())
	group, ctx := errgroup.WithContext(ctx)
	services := []service{completer, enqueuer, reaper}
	for _, s := range services {
		if err := s.Start(ctx); err != nil {
			return err
		}
		defer s.Stop()
	}
	if err := startRiver(ctx, river); err != nil {
		return err
	}
	adminServer, err := c.startAdmin(ctx, river, p.metrics, g.logger("admin"))
	if err != nil {
		return err
	}
	defer adminServer.Stop()
	group.Go(func() error {
		return api.Serve(ctx, c.addr(), server)
	})
	if simulator != nil {
		group.Go(func() error {
			if waitHealthy(ctx, "http://"+c.addr()+"/healthz") && simulator.Start(ctx) == nil {
				<-ctx.Done()
				simulator.Stop()
			}
			return nil
		})
	}
	p.logger.InfoContext(ctx, "all: running", slog.String("api", "http://"+c.addr()), slog.Bool("simulator", !c.NoSimulator))
	err = group.Wait()
	for _, s := range services {
		s.Stop()
	}
	stopRiver(river, g.logger("worker"))
	adminServer.Stop()
	p.logger.Info("all: stopped")
	return err
}

// simulatorAPIKey is the API key the simulator sends: none in demo mode or
// when SIMULATOR_API_KEY is set; otherwise a key made for the simulator's
// user for this run, which the returned func revokes.
func (c *allCmd) simulatorAPIKey(ctx context.Context, p *process) (string, func(), error) {
	if p.creator.AuthMode() != rides.AuthModeAPIKey || c.SimulatorAPIKey != "" {
		return "", func() {}, nil
	}
	queries := db.New()
	user, err := queries.UserGetByEmail(ctx, p.pool, c.SimulatorEmail)
	if err != nil {
		return "", nil, fmt.Errorf("getting the simulator's user %s: %w", c.SimulatorEmail, err)
	}
	token, key, err := rides.CreateAPIKey(ctx, p.pool, user.ID)
	if err != nil {
		return "", nil, err
	}
	p.logger.InfoContext(ctx, "all: API key made for the simulator", slog.String("email", user.Email), slog.Int64("api_key_id", key.ID))
	return token, func() {
		if _, err := queries.APIKeyRevoke(context.WithoutCancel(ctx), p.pool, key.ID); err != nil {
			p.logger.WarnContext(ctx, "all: revoking the simulator's API key", slog.Int64("api_key_id", key.ID), slog.String("error", err.Error()))
		}
	}, nil
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
