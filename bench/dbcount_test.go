package main

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// newCountedPool returns a pool on a fresh database, traced by a new
// counter, and a Stripe fake with one user.
func newCountedPool(t *testing.T) (*pgxpool.Pool, *dbCounter, *stripeStack) {
	t.Helper()
	ctx := t.Context()
	config, err := pgxpool.ParseConfig(dbtest.NewDatabaseURL(t))
	require.NoError(t, err)
	counter := newDBCounter()
	config.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, config)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	stripe, err := startStripe(ctx, pool, counter, "test", 0, 1)
	require.NoError(t, err)
	return pool, counter, stripe
}

func TestLimitNewKeyCountsAsTheAPIDoes(t *testing.T) {
	t.Parallel()
	pool, counter, stripe := newCountedPool(t)
	lim, err := newLimit(pool, stripe.client, pgx.ReadCommitted)
	require.NoError(t, err)
	email := stripe.users[0].Email
	key := uuid.NewString()

	counter.reset()
	require.NoError(t, lim.newKey(withOwner(t.Context(), email), email, key))
	counts := counter.counts()

	// The user lookup, then BEGIN, four statements and COMMIT twice.
	require.EqualValues(t, 13, counts.Queries)
	require.EqualValues(t, 2, counts.Begins)
	require.EqualValues(t, 1, counts.MaxConns)
	require.EqualValues(t, 1, counts.StripeCalls)
	require.Zero(t, counts.StripeCallsHolding)

	counter.reset()
	require.NoError(t, lim.replay(withOwner(t.Context(), email), email, key))
	counts = counter.counts()
	require.EqualValues(t, 1, counts.Queries)
	require.Zero(t, counts.Begins)
}

func TestCounterCatchesStripeCallHoldingAConnection(t *testing.T) {
	t.Parallel()
	pool, counter, stripe := newCountedPool(t)
	user := stripe.users[0]
	ctx := withOwner(t.Context(), user.Email)
	charge := func(ctx context.Context) {
		_, err := stripe.client.ChargeCreate(ctx, &stripeclient.ChargeParams{
			Amount: 2000, Currency: "usd", Customer: user.StripeCustomerID, IdempotencyKey: uuid.NewString(),
		})
		require.NoError(t, err)
	}

	counter.reset()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	charge(ctx) // inside the transaction: the mistake the counter must catch
	require.NoError(t, tx.Commit(ctx))
	charge(ctx) // after it: fine

	counts := counter.counts()
	require.EqualValues(t, 2, counts.StripeCalls)
	require.EqualValues(t, 1, counts.StripeCallsHolding)
	require.Positive(t, counts.ConnTime)
}
