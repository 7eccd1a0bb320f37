package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/jobs"
)

type simulatorCmd struct {
	APIURL      string        `name:"api-url" env:"API_URL" default:"http://127.0.0.1:5000" help:"Base URL of the API."`
	Concurrency int           `default:"1" help:"Workers sending requests at once."`
	Duration    time.Duration `default:"0s" help:"Stop after this long; 0 runs until interrupted."`
	Rate        float64       `default:"0" help:"Requests per second across all workers; 0 pauses each worker a random time up to SIMULATOR_INTERVAL instead."`
	Requests    int           `default:"0" help:"Stop after this many requests; 0 sends without limit."`

	simulatorFlags
}

func (f *simulatorFlags) simulator(apiURL string, logger *slog.Logger) *jobs.Simulator {
	return jobs.NewSimulator(&jobs.SimulatorConfig{
		APIURL:   apiURL,
		Email:    f.SimulatorEmail,
		Interval: f.SimulatorInterval,
	}, logger)
}

// simulatorFlags configure the simulator, alone or in all.
type simulatorFlags struct {
	SimulatorEmail    string        `env:"SIMULATOR_EMAIL" default:"user@example.com" help:"User the simulator's requests authenticate as."`
	SimulatorInterval time.Duration `env:"SIMULATOR_INTERVAL" default:"1s" help:"Longest random pause of a simulator worker between requests, without --rate."`
}

// Validate rejects settings the simulator cannot run with.
func (c *simulatorCmd) Validate() error {
	switch {
	case c.Concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case c.Duration < 0:
		return errors.New("--duration must not be negative")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.Requests < 0:
		return errors.New("--requests must not be negative")
	case c.SimulatorInterval <= 0:
		return errors.New("SIMULATOR_INTERVAL must be positive")
	}
	return nil
}

// Run sends ride requests to the API until ctx is done or a limit is
// reached.
func (c *simulatorCmd) Run(ctx context.Context, g *Globals) error {
	jobs.NewSimulator(&jobs.SimulatorConfig{
		APIURL:      c.APIURL,
		Concurrency: c.Concurrency,
		Duration:    c.Duration,
		Email:       c.SimulatorEmail,
		Interval:    c.SimulatorInterval,
		Rate:        c.Rate,
		Requests:    c.Requests,
	}, g.logger("simulator")).Start(ctx)
	return nil
}
