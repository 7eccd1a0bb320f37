package rides_test

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

type testBundle struct {
	creator *rides.Creator
	exec    db.Savepoint
	fake    *stripefake.Server
	user    *db.User
}

func setup(t *testing.T, engineConfig *idempotency.EngineConfig) *testBundle {
	t.Helper()
	ctx := context.Background()
	exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
	fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, baseURL)
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customerID, err := stripe.CustomerCreate(ctx, email, "tok_visa")
	require.NoError(t, err)
	return &testBundle{
		creator: ridestest.NewCreator(t, exec, engineConfig, stripe),
		exec:    exec,
		fake:    fake,
		user:    testfactory.User(ctx, t, exec, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID}),
	}
}

func newRequest(user *db.User, key string) *rides.Request {
	return &rides.Request{
		IdempotencyKey: key,
		OriginIP:       netip.MustParseAddr("192.0.2.1"),
		User:           user,
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CompleteResumesAbandonedKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RequestParams: []byte(`{"origin_lat": 1.5, "origin_lon": 2.5, "target_lat": 3.5, "target_lon": 4.5}`),
		})

		response, err := bundle.creator.Complete(ctx, key)

		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, response.Status)
		ride, err := db.New().RideGetByIdempotencyKeyID(ctx, bundle.exec, &key.ID)
		require.NoError(t, err)
		require.Equal(t, []float64{1.5, 2.5, 3.5, 4.5}, []float64{ride.OriginLat, ride.OriginLon, ride.TargetLat, ride.TargetLon})
		require.Len(t, bundle.fake.Charges(), 1)
		var originIP string
		require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT host(origin_ip) FROM audit_records WHERE resource_type = 'ride' AND resource_id = $1", ride.ID).Scan(&originIP))
		require.Equal(t, "127.0.0.1", originIP)
	})

	// A new key's first transaction (key and ride) fails to commit, and
	// while it waits to run again, a request with the same key inserts the
	// key and its ride and stops there. The retried transaction then
	// finds that key, takes it and charges: it must charge for the ride
	// in the database, not for the ride it inserted in the transaction
	// that rolled back.
	// The reaper may delete a key after the completer found it: Complete
	// must not start it over, with a new Stripe idempotency key.
	t.Run("CompleteDoesNotRestartReapedKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)
		_, err := bundle.exec.Exec(ctx, "DELETE FROM idempotency_keys WHERE id = $1", key.ID)
		require.NoError(t, err)

		_, err = bundle.creator.Complete(ctx, key)

		require.ErrorIs(t, err, idempotency.ErrKeyNotFound)
		var numKeys int
		require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE user_id = $1", bundle.user.ID).Scan(&numKeys))
		require.Zero(t, numKeys)
		require.Zero(t, bundle.fake.ChargeRequests())
	})

	// Stored parameters are sent back as stored, so that a key written
	// with a spelling of its parameters that Params would re-encode
	// differently still matches itself.
	t.Run("CompleteSendsStoredParams", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RequestParams: []byte(`{"origin_lat": 1, "origin_lon": 2, "target_lat": 3, "target_lon": 4, "note": "from an older version"}`),
		})

		response, err := bundle.creator.Complete(ctx, key)

		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, response.Status)
	})

	t.Run("ResumesWithCommittedRide", func(t *testing.T) {
		t.Parallel()
		var (
			bundle *testBundle
			value  = testfactory.KeyValue()
			failed bool
			raced  bool
		)
		bundle = setup(t, &idempotency.EngineConfig{
			Hooks: &idempotency.Hooks{BeforeCommit: func(_ context.Context, recoveryPoint string) error {
				if recoveryPoint == rides.RecoveryPointRideCreated && !failed {
					failed = true
					return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
				}
				return nil
			}},
			RetriedFunc: func(error) {
				if raced {
					return
				}
				raced = true
				other := newRequest(bundle.user, value)
				other.RaiseError = true
				_, err := bundle.creator.Create(ctx, other)
				require.ErrorIs(t, err, rides.ErrSimulatedFailure)
			},
		})

		response, err := bundle.creator.Create(ctx, newRequest(bundle.user, value))

		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, response.Status)
		require.True(t, raced, "the other request ran between the attempts")
		key := keyOf(t, bundle, value)
		require.Equal(t, int32(2), key.RunCount, "inserted by the other request, then taken by this one")
		ride, err := db.New().RideGetByIdempotencyKeyID(ctx, bundle.exec, &key.ID)
		require.NoError(t, err)
		require.NotNil(t, ride.StripeChargeID)
		charges := bundle.fake.Charges()
		require.Len(t, charges, 1)
		require.Equal(t, *ride.StripeChargeID, charges[0].ID)
		require.Equal(t, strconv.FormatInt(ride.ID, 10), charges[0].Metadata[rides.MetadataRideID])
	})
}

func keyOf(t *testing.T, bundle *testBundle, value string) *db.IdempotencyKey {
	t.Helper()
	ctx := context.Background()
	row, err := db.New().UserGetWithIdempotencyKey(ctx, bundle.exec, &db.UserGetWithIdempotencyKeyParams{Email: bundle.user.Email, IdempotencyKey: value})
	require.NoError(t, err)
	require.NotNil(t, row.KeyID)
	key, err := db.New().IdempotencyKeyGetByID(ctx, bundle.exec, *row.KeyID)
	require.NoError(t, err)
	return key
}

func TestNewCreator(t *testing.T) {
	t.Parallel()
	_, err := rides.NewCreator(nil, nil, nil, &rides.CreatorConfig{StripeIdempotencyWindow: -time.Hour})
	require.ErrorContains(t, err, "ride creator: StripeIdempotencyWindow must not be negative, got -1h0m0s")
}
