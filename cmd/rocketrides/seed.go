package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

type seedCmd struct {
	stripeFlags
}

// Run seeds the demo users in the Stripe that STRIPE_API_KEY names (or in a
// built-in fake, which forgets them when the command ends), and gives each
// an API key if it has none, printed on stdout this once.
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
	return seedUsers(ctx, p.pool, p.stripe, p.logger, os.Stdout)
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
//
// With apiKeys set, each user without a live API key gets one, printed on
// apiKeys: the only time it is shown, since only its hash is stored.
func seedUsers(ctx context.Context, exec db.DBTX, stripe *stripeclient.Client, logger *slog.Logger, apiKeys io.Writer) error {
	queries := db.New()
	for _, demo := range demoUsers {
		user, err := seedUser(ctx, exec, stripe, logger, demo.email, demo.source)
		if err != nil {
			return err
		}
		if apiKeys == nil {
			continue
		}
		keys, err := queries.APIKeyListByUser(ctx, exec, user.ID)
		if err != nil {
			return fmt.Errorf("listing API keys of %s: %w", demo.email, err)
		}
		if live := slices.IndexFunc(keys, func(key *db.APIKey) bool { return key.RevokedAt == nil }); live >= 0 {
			logger.InfoContext(ctx, "seed: API key exists; `rocketrides api-key create` makes another",
				slog.String("email", demo.email), slog.Int64("api_key_id", keys[live].ID))
			continue
		}
		token, key, err := rides.CreateAPIKey(ctx, exec, user.ID)
		if err != nil {
			return err
		}
		logger.InfoContext(ctx, "seed: API key created", slog.String("email", demo.email), slog.Int64("api_key_id", key.ID))
		fmt.Fprintf(apiKeys, "API key of %s (shown once): %s\n", demo.email, token)
	}
	return nil
}

// seedUser makes sure the user with email exists with a customer that
// stripe knows, paying with source.
func seedUser(ctx context.Context, exec db.DBTX, stripe *stripeclient.Client, logger *slog.Logger, email, source string) (*db.User, error) {
	queries := db.New()
	user, err := queries.UserGetByEmail(ctx, exec, email)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("getting user %s: %w", email, err)
	default:
		exists, err := stripe.CustomerExists(ctx, user.StripeCustomerID)
		if err != nil {
			return nil, err
		}
		if exists {
			logger.InfoContext(ctx, "seed: user exists", slog.String("email", email), slog.String("stripe_customer_id", user.StripeCustomerID))
			return user, nil
		}
	}
	customerID, err := stripe.CustomerCreate(ctx, email, source)
	if err != nil {
		return nil, err
	}
	user, err = queries.UserUpsert(ctx, exec, &db.UserUpsertParams{Email: email, StripeCustomerID: customerID})
	if err != nil {
		return nil, fmt.Errorf("upserting user %s: %w", email, err)
	}
	logger.InfoContext(ctx, "seed: user created", slog.String("email", email), slog.Int64("user_id", user.ID), slog.String("stripe_customer_id", customerID))
	return user, nil
}
