package main

import (
	"context"
	"errors"
	"os"

	"github.com/rocketrides/rocketrides/reconcile"
)

type reconcileCmd struct {
	stripeFlags
}

// errNoStripeKey is why reconcile refuses to run on the built-in fake.
var errNoStripeKey = errors.New("STRIPE_API_KEY is unset: reconcile compares the database with the charges of the Stripe " +
	"the other processes use, and a built-in fake would start empty, so every ride would look unpaid. " +
	"Set STRIPE_API_KEY, and STRIPE_API_BASE if that Stripe is a fake (such as a running `rocketrides stripe-fake`)")

// errDifferences is the error of a reconcile that found problems.
var errDifferences = errors.New("the database and Stripe differ (see the report above)")

// Run prints the report, and fails if it found any problem.
func (c *reconcileCmd) Run(ctx context.Context, g *Globals) error {
	if c.StripeAPIKey == "" {
		return errNoStripeKey
	}
	stripe, _, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{maxConns: 2, name: "reconcile", stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	reconciler, err := reconcile.NewReconciler(p.pool, p.stripe, &reconcile.ReconcilerConfig{Logger: p.logger})
	if err != nil {
		return err
	}
	report, err := reconciler.Run(ctx)
	if err != nil {
		return err
	}
	if err := report.Write(os.Stdout); err != nil {
		return err
	}
	if !report.OK() {
		return errDifferences
	}
	return nil
}
