package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/roundtrips"
)

// newTestLimit returns a limit at isolation on a fresh database through a
// proxy, the proxy, a pool on the database, and a user with a customer in
// a Stripe fake.
func newTestLimit(t *testing.T, isolation string) (*limit, *roundtrips.Proxy, *pgxpool.Pool, *benchUser) {
	t.Helper()
	databaseURL, proxy := proxiedDatabase(t)
	pool, err := pgxpool.New(t.Context(), databaseURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	stripe, err := startStripe(t.Context(), pool, 1)
	require.NoError(t, err)
	lim, err := newLimit(t.Context(), databaseURL, 4, 1, isolation, stripe.url)
	require.NoError(t, err)
	t.Cleanup(lim.close)
	return lim, proxy, pool, stripe.users[0]
}

// requireOneRow fails unless query, with args, counts exactly one row.
func requireOneRow(t *testing.T, pool *pgxpool.Pool, query string, args ...any) {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM ("+query+") q", args...).Scan(&n))
	require.Equal(t, 1, n, query)
}

func TestLimitNewKeyWritesTheRidesRowsInThreeRoundTrips(t *testing.T) {
	t.Parallel()
	for _, isolation := range []string{isolationReadCommitted, isolationSerializable} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			lim, proxy, pool, user := newTestLimit(t, isolation)
			ctx := t.Context()
			require.NoError(t, lim.newKey(ctx, user.email, uuid.NewString())) // prepares the statements
			key := uuid.NewString()

			proxy.Reset()
			require.NoError(t, lim.newKey(ctx, user.email, key))
			require.Equal(t, roundtrips.Counts{RoundTrips: 3, Transactions: 3}, proxy.Counts())

			var rideID int64
			var chargeID string
			require.NoError(t, pool.QueryRow(ctx, `SELECT r.id, r.stripe_charge_id FROM rides r
				JOIN idempotency_keys k ON k.id = r.idempotency_key_id WHERE k.idempotency_key = $1`, key).Scan(&rideID, &chargeID))
			requireOneRow(t, pool, `SELECT 1 FROM idempotency_keys WHERE idempotency_key = $1 AND recovery_point = 'finished'
				AND response_code = 201 AND lock_token IS NULL AND locked_at IS NULL AND workflow = 'POST /rides'
				AND response_body->'ride'->>'id' = $2 AND response_body->'ride'->>'stripe_charge_id' = $3
				AND request_params = $4::jsonb`, key, strconv.FormatInt(rideID, 10), chargeID, rideRequestParams)
			requireOneRow(t, pool, `SELECT 1 FROM audit_records WHERE action = 'ride.created' AND resource_id = $1`, rideID)
			requireOneRow(t, pool, `SELECT 1 FROM staged_jobs WHERE job_name = 'send_ride_receipt' AND (job_args->>'ride_id')::bigint = $1`, rideID)
		})
	}
}

func TestLimitCancelWritesTheCancelsRowsInThreeRoundTrips(t *testing.T) {
	t.Parallel()
	lim, proxy, pool, user := newTestLimit(t, isolationReadCommitted)
	ctx := t.Context()
	newRide := func() int64 {
		key := uuid.NewString()
		require.NoError(t, lim.newKey(ctx, user.email, key))
		var rideID int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT r.id FROM rides r JOIN idempotency_keys k ON k.id = r.idempotency_key_id
			WHERE k.idempotency_key = $1`, key).Scan(&rideID))
		return rideID
	}
	require.NoError(t, lim.cancel(ctx, user.email, uuid.NewString(), newRide())) // prepares the statements
	rideID, key := newRide(), uuid.NewString()

	proxy.Reset()
	require.NoError(t, lim.cancel(ctx, user.email, key, rideID))
	require.Equal(t, roundtrips.Counts{RoundTrips: 3, Transactions: 3}, proxy.Counts())

	requireOneRow(t, pool, `SELECT 1 FROM ride_cancellations c JOIN idempotency_keys k ON k.id = c.idempotency_key_id
		WHERE c.ride_id = $1 AND c.stripe_refund_id IS NOT NULL AND c.cancelled_at IS NOT NULL
		AND k.idempotency_key = $2 AND k.recovery_point = 'finished' AND k.response_code = 200
		AND k.response_body->'ride'->>'status' = 'cancelled' AND k.request_path = '/rides/' || $1 || '/cancel'
		AND k.request_params = jsonb_build_object('ride_id', $1::bigint)`, rideID, key)
	requireOneRow(t, pool, `SELECT 1 FROM audit_records WHERE action = 'ride.cancelled' AND resource_id = $1`, rideID)
	requireOneRow(t, pool, `SELECT 1 FROM staged_jobs WHERE job_name = 'send_cancellation_receipt' AND (job_args->>'ride_id')::bigint = $1`, rideID)

	require.Error(t, lim.cancel(ctx, user.email, uuid.NewString(), rideID), "a cancelled ride is not claimed twice")
}

func TestLimitFinishStopsWhenTheLockIsLost(t *testing.T) {
	t.Parallel()
	lim, _, _, user := newTestLimit(t, isolationReadCommitted)
	row, err := lim.readUserWithKey(t.Context(), user.email, "none")
	require.NoError(t, err)
	var keyID, rideID int64
	var stripeKey uuid.UUID
	require.NoError(t, lim.pool.QueryRow(t.Context(), sqlCreateRide, uuid.NewString(), uuid.New(), rideRequestParams, row.userID,
		37.7749, -122.4194, 37.8044, -122.2712).Scan(&keyID, &stripeKey, &rideID))

	_, err = lim.finish(t.Context(), sqlFinishRide, keyID, uuid.New(), "ch_other", rideID)

	require.ErrorIs(t, err, errLockLost)
}

func TestBareHandlerReplaysInOneRoundTripAndCreatesInThree(t *testing.T) {
	t.Parallel()
	lim, proxy, pool, user := newTestLimit(t, isolationReadCommitted)
	ctx := t.Context()
	server := httptest.NewServer(lim.bareHandler())
	t.Cleanup(server.Close)
	client := newHTTPClient(1)
	_, err := postRide(ctx, client, server.URL, user.email, uuid.NewString()) // prepares the statements
	require.NoError(t, err)
	stored := func(key string) string {
		var body json.RawMessage
		require.NoError(t, pool.QueryRow(ctx, "SELECT response_body FROM idempotency_keys WHERE idempotency_key = $1", key).Scan(&body))
		return string(body)
	}

	key := uuid.NewString()
	proxy.Reset()
	ans, err := postRide(ctx, client, server.URL, user.email, key)
	require.NoError(t, err)
	require.Equal(t, roundtrips.Counts{RoundTrips: 3, Transactions: 3}, proxy.Counts())
	require.Equal(t, http.StatusCreated, ans.status)
	require.False(t, ans.replayed)
	require.JSONEq(t, stored(key), string(ans.body))

	proxy.Reset()
	ans, err = postRide(ctx, client, server.URL, user.email, key)
	require.NoError(t, err)
	require.Equal(t, roundtrips.Counts{RoundTrips: 1, Transactions: 1}, proxy.Counts())
	require.Equal(t, http.StatusCreated, ans.status)
	require.True(t, ans.replayed)
	require.JSONEq(t, stored(key), string(ans.body))

	unfinished := uuid.NewString()
	var keyID, rideID int64
	var stripeKey uuid.UUID
	row, err := lim.readUserWithKey(ctx, user.email, unfinished)
	require.NoError(t, err)
	require.NoError(t, lim.pool.QueryRow(ctx, sqlCreateRide, unfinished, uuid.New(), rideRequestParams, row.userID,
		37.7749, -122.4194, 37.8044, -122.2712).Scan(&keyID, &stripeKey, &rideID))
	ans, err = postRide(ctx, client, server.URL, user.email, unfinished)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, ans.status)
}

// proxiedDatabase creates a fresh database and returns its URL through a
// new proxy.
func proxiedDatabase(t *testing.T) (string, *roundtrips.Proxy) {
	t.Helper()
	databaseURL := dbtest.NewDatabaseURL(t)
	target, err := databaseHostPort(databaseURL)
	require.NoError(t, err)
	proxy, err := roundtrips.NewProxy(target)
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	proxied, err := proxiedURL(databaseURL, proxy.Addr())
	require.NoError(t, err)
	return proxied, proxy
}
