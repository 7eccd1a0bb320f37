package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/jobs"
)

type simulatorCmd struct {
	APIURL   string        `name:"api-url" env:"API_URL" default:"http://127.0.0.1:5000" help:"Base URL of the API."`
	Duration time.Duration `default:"0s" help:"Stop after this long; 0 runs until interrupted."`
	Rate     float64       `default:"0" help:"Requests per second, one at a time; 0 pauses a random time up to SIMULATOR_INTERVAL instead."`

	// Deprecated: the simulator sends one request at a time, as the
	// original; load is the bench's job (go run ./bench).
	Concurrency int `default:"1" help:"Deprecated and ignored: the simulator sends one request at a time; use the bench for load."`
	Requests    int `default:"0" help:"Deprecated and ignored: the simulator runs until interrupted or --duration; use the bench for load."`

	simulatorFlags
}

// simulatorFlags configure the simulator, alone or in all.
type simulatorFlags struct {
	SimulatorAPIKey      string        `env:"SIMULATOR_API_KEY" help:"API key the simulator's requests send, for an API in api_key mode; unset, they send SIMULATOR_EMAIL (demo mode)."`
	SimulatorCancelShare float64       `env:"SIMULATOR_CANCEL_SHARE" default:"0.1" help:"Share of the rides created that the simulator then cancels, from 0 (none) to 1."`
	SimulatorEmail       string        `env:"SIMULATOR_EMAIL" default:"user@example.com" help:"User the simulator's requests authenticate as."`
	SimulatorInterval    time.Duration `env:"SIMULATOR_INTERVAL" default:"1s" help:"Longest random pause of the simulator between requests, without --rate."`
}

// simulator returns a simulator of the API at apiURL, sending rate requests
// per second (0: random pauses), with apiKey if set (SIMULATOR_API_KEY
// otherwise).
func (f *simulatorFlags) simulator(apiURL string, rate float64, apiKey string, logger *slog.Logger) (*jobs.Simulator, error) {
	if f.SimulatorCancelShare < 0 || f.SimulatorCancelShare > 1 {
		return nil, fmt.Errorf("--simulator-cancel-share must be between 0 and 1, got %g", f.SimulatorCancelShare)
	}
	cancelShare := f.SimulatorCancelShare
	if cancelShare == 0 {
		cancelShare = -1 // none; zero would mean the default
	}
	client, err := apiclient.NewClient(apiURL, nil)
	if err != nil {
		return nil, err
	}
	return jobs.NewSimulator(client, &jobs.SimulatorConfig{
		APIKey:      cmp.Or(apiKey, f.SimulatorAPIKey),
		CancelShare: cancelShare,
		Email:       f.SimulatorEmail,
		Interval:    f.SimulatorInterval,
		Logger:      logger,
		Rate:        rate,
	})
}

// Validate rejects settings the simulator cannot run with.
func (c *simulatorCmd) Validate() error {
	if c.Duration < 0 {
		return errors.New("--duration must not be negative")
	}
	return nil
}

// Run sends ride requests to the API until ctx is done or Duration has
// passed.
func (c *simulatorCmd) Run(ctx context.Context, g *Globals) error {
	logger := g.logger("simulator")
	simulator, err := c.simulator(c.APIURL, c.Rate, "", logger)
	if err != nil {
		return err
	}
	if c.Concurrency != 1 || c.Requests != 0 {
		logger.WarnContext(ctx, "simulator: --concurrency and --requests are deprecated and ignored; use the bench for load")
	}
	if c.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Duration)
		defer cancel()
	}
	if err := simulator.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	simulator.Stop()
	return nil
}
