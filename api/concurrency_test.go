package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
)

// TestCreateRideConcurrent races many requests with one new key, on a
// database of its own, at both isolation levels: one ride, one charge,
// every answer 201 or 409, and a retry replays the 201.
func TestCreateRideConcurrent(t *testing.T) {
	t.Parallel()
	const numRequests = 50

	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := dbtest.NewDatabase(t)
			bundle := setup(t, &setupOpts{exec: pool, engine: idempotency.Config{Isolation: isolation}})
			value := testfactory.KeyValue()

			start := make(chan struct{})
			recorders := make([]*httptest.ResponseRecorder, numRequests)
			var wg sync.WaitGroup
			for i := range recorders {
				wg.Go(func() {
					r := newFormRequest(bundle.user.Email, value, validForm())
					<-start
					recorders[i] = bundle.serve(r)
				})
			}
			close(start)
			wg.Wait()

			var created *httptest.ResponseRecorder
			statuses := map[int]int{}
			for _, recorder := range recorders {
				statuses[recorder.Code]++
				switch recorder.Code {
				case http.StatusCreated:
					if created == nil {
						created = recorder
					}
					require.Equal(t, created.Body.String(), recorder.Body.String(), "every 201 shows the same ride")
				case http.StatusConflict:
					require.NotEmpty(t, recorder.Header().Get("Retry-After"))
				default:
					require.Failf(t, "unexpected status", "%d: %s", recorder.Code, recorder.Body)
				}
			}
			t.Logf("statuses: %v", statuses)
			require.NotNil(t, created, "one of the requests must get through")

			var numRides, numAudits, numReceipts int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM rides").Scan(&numRides))
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM audit_records").Scan(&numAudits))
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM staged_jobs").Scan(&numReceipts))
			require.Equal(t, 1, numRides)
			require.Equal(t, 1, numAudits)
			require.Equal(t, 1, numReceipts)
			require.Len(t, bundle.fake.Charges(), 1)
			bundle.requireRideCharged(t, bundle.user, value, nil)

			requireReplay(t, created, bundle.post(bundle.user, value, validForm()))
		})
	}
}

// TestCreateRideNoTransactionDuringCharge looks at the database while
// Stripe is being called: the key phase has committed, the key is locked,
// and none of the server's connections is in a transaction.
func TestCreateRideNoTransactionDuringCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	var (
		checked      atomic.Bool
		idleInTx     int
		pointDuring  string
		lockedDuring bool
	)
	wrapStripe := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/charges" {
				err := pool.QueryRow(ctx,
					"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").
					Scan(&idleInTx)
				if err == nil {
					err = pool.QueryRow(ctx, "SELECT recovery_point, locked_at IS NOT NULL FROM idempotency_keys").Scan(&pointDuring, &lockedDuring)
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				checked.Store(true)
			}
			next.ServeHTTP(w, r)
		})
	}
	bundle := setup(t, &setupOpts{exec: pool, wrapStripe: wrapStripe})
	value := testfactory.KeyValue()

	body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

	require.True(t, checked.Load())
	require.Zero(t, idleInTx, "connections in a transaction during the Stripe call")
	require.Equal(t, rides.RecoveryPointRideCreated, pointDuring)
	require.True(t, lockedDuring)
	bundle.requireRideCharged(t, bundle.user, value, body)
}
