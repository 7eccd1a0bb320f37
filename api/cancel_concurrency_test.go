package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
)

// TestCancelRideConcurrent races many cancels of one ride, on a database of
// its own, at both isolation levels. With one key: one refund, every answer
// 200 or 409 (in progress, to retry), and a retry replays the 200. With a
// key each: one refund, one 200, and every other answer 409, the ride's own
// constraint (one cancellation per ride) deciding, not the keys.
func TestCancelRideConcurrent(t *testing.T) {
	t.Parallel()
	const numRequests = 50

	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		for _, distinctKeys := range []bool{false, true} {
			name := string(isolation) + "/OneKey"
			if distinctKeys {
				name = string(isolation) + "/DistinctKeys"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				pool := dbtest.NewDatabase(t)
				bundle := setup(t, &setupOpts{exec: pool, engine: &idempotency.EngineConfig{Isolation: isolation}, api: admitAll})
				ride := bundle.chargedRide(t, bundle.user)
				values := make([]string, numRequests)
				for i := range values {
					values[i] = testfactory.KeyValue()
					if !distinctKeys && i > 0 {
						values[i] = values[0]
					}
				}

				start := make(chan struct{})
				recorders := make([]*httptest.ResponseRecorder, numRequests)
				var wg sync.WaitGroup
				for i := range recorders {
					wg.Go(func() {
						r := newCancelRequest(bundle.user.Email, values[i], itoa(ride.ID), "", "")
						<-start
						recorders[i] = bundle.serve(r)
					})
				}
				close(start)
				wg.Wait()

				var okIndex = -1
				statuses := map[int]int{}
				for i, recorder := range recorders {
					statuses[recorder.Code]++
					switch recorder.Code {
					case http.StatusOK:
						if okIndex < 0 {
							okIndex = i
						}
						require.Equal(t, recorders[okIndex].Body.String(), recorder.Body.String(), "every 200 shows the same cancellation")
					case http.StatusConflict:
						if !distinctKeys {
							require.NotEmpty(t, recorder.Header().Get("Retry-After"), "%s", recorder.Body)
						}
					default:
						require.Failf(t, "unexpected status", "%d: %s", recorder.Code, recorder.Body)
					}
				}
				t.Logf("statuses: %v", statuses)
				require.GreaterOrEqual(t, okIndex, 0, "one of the requests must get through")
				if distinctKeys {
					require.Equal(t, 1, statuses[http.StatusOK], "one cancellation, one 200")
				}

				require.Len(t, bundle.fake.Refunds(), 1)
				var numCancellations, numAudits, numReceipts int
				require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM ride_cancellations").Scan(&numCancellations))
				require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM audit_records WHERE action = 'ride.cancelled'").Scan(&numAudits))
				require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM staged_jobs WHERE job_name = 'send_cancellation_receipt'").Scan(&numReceipts))
				require.Equal(t, []int{1, 1, 1}, []int{numCancellations, numAudits, numReceipts})
				okValue := values[okIndex]
				ok := recorders[okIndex]
				bundle.requireCancelled(t, ok, bundle.user, okValue, ride)

				requireReplay(t, ok, bundle.serve(newCancelRequest(bundle.user.Email, okValue, itoa(ride.ID), "", "")))
				if distinctKeys {
					// A loser's answer is stored too: its retry replays the 409.
					for i, recorder := range recorders {
						if i != okIndex && recorder.Header().Get("Retry-After") == "" {
							requireReplay(t, recorder, bundle.serve(newCancelRequest(bundle.user.Email, values[i], itoa(ride.ID), "", "")))
							break
						}
					}
				}
			})
		}
	}
}
