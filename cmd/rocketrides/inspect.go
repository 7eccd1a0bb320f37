package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rocketrides/rocketrides/inspect"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/stripeclient"
)

type inspectCmd struct {
	stripeFlags

	Email       string        `help:"The user's email, with --key."`
	Key         string        `help:"The idempotency key (the Idempotency-Key header's value), with --email."`
	Ride        int64         `help:"The ride's id, instead of --email and --key."`
	JSON        bool          `name:"json" help:"Print the report as JSON, for scripts."`
	LockTimeout time.Duration `env:"LOCK_TIMEOUT" default:"90s" help:"The API's lock timeout, against which a key's lock is judged live or stale."`
}

// Validate asks for a ride, or an email and a key.
func (c *inspectCmd) Validate() error {
	switch {
	case c.Ride != 0 && (c.Email != "" || c.Key != ""):
		return errors.New("give --ride, or --email and --key, not both")
	case c.Ride == 0 && (c.Email == "" || c.Key == ""):
		return errors.New("give --email and --key, or --ride")
	}
	return nil
}

// Run prints the report on the key or the ride. Stripe is asked only when
// STRIPE_API_KEY is set: a built-in fake would know nothing.
func (c *inspectCmd) Run(ctx context.Context, g *Globals) error {
	var stripe *stripeclient.Client
	if c.StripeAPIKey != "" {
		var err error
		if stripe, _, err = newStripe(ctx, g, &c.stripeFlags); err != nil {
			return err
		}
	}
	p, err := newProcess(ctx, g, &processConfig{maxConns: 2, name: "inspect", stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	if stripe == nil {
		p.logger.WarnContext(ctx, "inspect: STRIPE_API_KEY is unset: Stripe is not asked")
	}
	riverClient, err := jobs.NewRiverClient(p.pool, nil)
	if err != nil {
		return err
	}
	inspector, err := inspect.NewInspector(p.pool, riverClient, stripe, &inspect.InspectorConfig{LockTimeout: c.LockTimeout, Logger: p.logger})
	if err != nil {
		return err
	}
	var report *inspect.Report
	if c.Ride != 0 {
		report, err = inspector.ByRide(ctx, c.Ride)
	} else {
		report, err = inspector.ByKey(ctx, c.Email, c.Key)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return report.WriteJSON(os.Stdout)
	}
	return report.WriteText(os.Stdout)
}
