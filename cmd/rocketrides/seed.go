package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/stripeclient"
)

type seedCmd struct {
	stripeFlags
}

// Run seeds the demo users in the Stripe that STRIPE_API_KEY names (or in a
// built-in fake, which forgets them when the command ends).
func (c *seedCmd) Run(ctx context.Context, g *Globals) error {
	stripe, _, err := newStripe(ctx, g, &c.stripeFlags)
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, g, &processConfig{maxConns: 2, name: "seed", stripe: stripe})
	if err != nil {
		return err
	}
	defer p.close()
	return seedUsers(ctx, p.pool, p.stripe, p.logger)
}

// demoUsers are the original's two users: one whose card works, one whose
// card Stripe declines.
var demoUsers = []struct{ email, source string }{
	{"user@example.com", "tok_visa"},
	{"user-bad-source@example.com", "tok_chargeCustomerFail"},
}

// seedUsers makes sure each demo user exists with a customer that the
// configured Stripe knows. A user whose customer Stripe still has is left
// alone, so seeding twice is harmless; one whose customer is gone (the
// built-in fake forgets everything when it stops) gets a new customer.
func seedUsers(ctx context.Context, exec db.DBTX, stripe *stripeclient.Client, logger *slog.Logger) error {
	queries := db.New()
	for _, demo := range demoUsers {
		user, err := queries.UserGetByEmail(ctx, exec, demo.email)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("getting user %s: %w", demo.email, err)
		default:
			exists, err := stripe.CustomerExists(ctx, user.StripeCustomerID)
			if err != nil {
				return err
			}
			if exists {
				logger.InfoContext(ctx, "seed: user exists", slog.String("email", demo.email), slog.String("stripe_customer_id", user.StripeCustomerID))
				continue
			}
		}
		customerID, err := stripe.CustomerCreate(ctx, demo.email, demo.source)
		if err != nil {
			return err
		}
		user, err = queries.UserUpsert(ctx, exec, &db.UserUpsertParams{Email: demo.email, StripeCustomerID: customerID})
		if err != nil {
			return fmt.Errorf("upserting user %s: %w", demo.email, err)
		}
		logger.InfoContext(ctx, "seed: user created", slog.String("email", demo.email), slog.Int64("user_id", user.ID), slog.String("stripe_customer_id", customerID))
	}
	return nil
}
