package rides_test

import (
	"context"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/roundtrips"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// Round trips a request may make, per phase, as goal 1 of issue 11 sets
// them.
const (
	maxRoundTripsNewKey       = 3 // the user and key read, then one per phase
	maxRoundTripsCancelPhase  = 2
	maxRoundTripsCancelRefund = 1 // the phase that records the refund reads nothing back
	maxRoundTripsReplay       = 1
)

// TestRoundTrips counts the round trips to PostgreSQL of each kind of
// request, through a proxy that reads the protocol between a real pool and
// the server (package roundtrips, which the bench measures with too). The
// pool has one connection, warmed by a first request of each kind.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			proxy, proxiedURL := newProxy(t, dbtest.NewDatabaseURL(t))
			pool, err := db.NewPool(ctx, proxiedURL, 1)
			require.NoError(t, err)
			t.Cleanup(pool.Close)

			// marks records the count at every phase boundary.
			var marks []int64
			mark := func(context.Context, string) error {
				marks = append(marks, proxy.Counts().RoundTrips)
				return nil
			}
			var retries atomic.Int64
			_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
			stripe := ridestest.NewStripe(t, baseURL)
			creator := ridestest.NewCreator(t, pool, &idempotency.EngineConfig{
				Hooks:       &idempotency.Hooks{AfterCommit: mark, BeforePhase: mark},
				Isolation:   isolation,
				RetriedFunc: func(error) { retries.Add(1) },
			}, stripe)
			email := "rider-" + testfactory.KeyValue() + "@example.com"
			customerID, err := stripe.CustomerCreate(ctx, email, "tok_visa")
			require.NoError(t, err)
			user := testfactory.User(ctx, t, pool, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID})

			// run authenticates with key and runs do, as the API does, and
			// returns the round trips of the whole request and of each of its
			// phases: from the read to the key phase's commit, and from each
			// later phase's start to its commit.
			run := func(key string, do func(known *idempotency.KnownKey) (*idempotency.Response, error)) (int64, []int64) {
				marks = nil
				start := proxy.Counts().RoundTrips
				_, known, err := creator.Authenticate(ctx, email, key)
				require.NoError(t, err)
				afterRead := proxy.Counts().RoundTrips
				response, err := do(known)
				require.NoError(t, err)
				require.Less(t, response.Status, 300)
				total := proxy.Counts().RoundTrips - start
				if len(marks) == 0 {
					return total, nil
				}
				phases := []int64{marks[0] - afterRead}
				for i := 1; i+1 < len(marks); i += 2 { // BeforePhase, AfterCommit
					phases = append(phases, marks[i+1]-marks[i])
				}
				return total, phases
			}
			create := func(key string) (int64, []int64) {
				return run(key, func(known *idempotency.KnownKey) (*idempotency.Response, error) {
					req := newRequest(user, key)
					req.Known = known
					return creator.Create(ctx, req)
				})
			}
			cancel := func(rideID int64, key string) (int64, []int64) {
				return run(key, func(known *idempotency.KnownKey) (*idempotency.Response, error) {
					return creator.Cancel(ctx, &rides.CancelRequest{
						IdempotencyKey: key, Known: known, OriginIP: netip.MustParseAddr("192.0.2.1"),
						Params: rides.CancelParams{RideID: rideID}, User: user,
					})
				})
			}
			rideOf := func(key string) int64 {
				k, err := db.New().IdempotencyKeyGetByUserIDAndKey(ctx, pool, &db.IdempotencyKeyGetByUserIDAndKeyParams{IdempotencyKey: key, UserID: user.ID})
				require.NoError(t, err)
				ride, err := db.New().RideGetByIdempotencyKeyID(ctx, pool, &k.ID)
				require.NoError(t, err)
				return ride.ID
			}

			// Warm the connection: one request of each kind.
			warm := testfactory.KeyValue()
			create(warm)
			create(warm)
			cancel(rideOf(warm), testfactory.KeyValue())
			retries.Store(0)

			key := testfactory.KeyValue()
			newKey, newKeyPhases := create(key)
			replay, _ := create(key)
			cancelKey := testfactory.KeyValue()
			cancelled, cancelPhases := cancel(rideOf(key), cancelKey)
			cancelReplay, _ := cancel(rideOf(key), cancelKey)
			t.Logf("round trips at %s: new key %d (phases %v), replay %d, cancel %d (phases %v), cancel replay %d; retries %d",
				isolation, newKey, newKeyPhases, replay, cancelled, cancelPhases, cancelReplay, retries.Load())

			require.Zero(t, retries.Load(), "one client alone conflicts with no one: the counts are of one attempt")
			require.LessOrEqual(t, newKey, int64(maxRoundTripsNewKey))
			require.Len(t, newKeyPhases, 2)
			require.LessOrEqual(t, replay, int64(maxRoundTripsReplay))
			require.Len(t, cancelPhases, 2)
			for _, phase := range cancelPhases {
				require.LessOrEqual(t, phase, int64(maxRoundTripsCancelPhase))
			}
			require.LessOrEqual(t, cancelPhases[1], int64(maxRoundTripsCancelRefund))
			require.LessOrEqual(t, cancelReplay, int64(maxRoundTripsReplay))
		})
	}
}

// newProxy proxies the database at databaseURL and returns the proxy and
// the same database's URL through it.
func newProxy(t *testing.T, databaseURL string) (*roundtrips.Proxy, string) {
	t.Helper()
	parsed, err := url.Parse(databaseURL)
	require.NoError(t, err)
	proxy, err := roundtrips.NewProxy(parsed.Host)
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	parsed.Host = proxy.Addr()
	return proxy, parsed.String()
}
