package idempotency_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
)

// benchWorkflow has the shape of the ride workflow without its SQL and
// without Stripe: the key phase moves the key to middlePoint, the next
// phase finishes it with 201.
func benchWorkflow() *idempotency.Phases {
	return &idempotency.Phases{
		Start: func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
			return idempotency.RecoveryPoint(middlePoint), nil
		},
		Steps: map[string]idempotency.StepFunc{
			middlePoint: func(ctx context.Context, run *idempotency.Run) error {
				return run.AtomicPhase(ctx, func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
					return idempotency.Finish(http.StatusCreated, map[string]string{"message": "ok"}), nil
				})
			},
		},
	}
}

// benchRequest is a request of the test workflow, user's, with the given
// key.
func benchRequest(user *db.User, key string) *idempotency.Request {
	return newRequest(user, key)
}

// BenchmarkExecuteNewKey runs a new key through both phases: two
// transactions (savepoints of the test's transaction here) of two
// statements each, and the engine around them.
func BenchmarkExecuteNewKey(b *testing.B) {
	ctx := b.Context()
	tx := dbtest.Tx(ctx, b)
	user := testfactory.User(ctx, b, tx, nil)
	engine := newEngine(b, db.Savepoint{Tx: tx}, nil)
	workflow := benchWorkflow()

	for b.Loop() {
		response, err := engine.Execute(ctx, benchRequest(user, testfactory.KeyValue()), workflow)
		require.NoError(b, err)
		require.Equal(b, http.StatusCreated, response.Status)
	}
}

// BenchmarkExecuteReplayKnown replays a finished key that the caller has
// read already, as the API does: no database, only the comparison of the
// parameters and the compaction of the stored body.
func BenchmarkExecuteReplayKnown(b *testing.B) {
	ctx := b.Context()
	engine := newEngine(b, db.Savepoint{Tx: dbtest.Tx(ctx, b)}, nil)
	// As PostgreSQL returns jsonb: keys sorted, a space after ':' and ','.
	stored := json.RawMessage(`{"origin_lat": 0.0, "origin_lon": 0.0, "target_lat": 0.0, "target_lon": 0.0}`)
	request := benchRequest(&db.User{ID: 1}, testfactory.KeyValue())
	request.Params = json.RawMessage(`{"origin_lat":0,"origin_lon":0,"target_lat":0,"target_lon":0}`)
	request.Known = &idempotency.KnownKey{
		Method:        http.MethodPost,
		Params:        stored,
		Path:          testPath,
		RecoveryPoint: idempotency.RecoveryPointFinished,
		ResponseBody:  json.RawMessage(`{"message": "Payment accepted. Your pilot is on their way!", "ride": {"id": 1, "origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "created_at": "2026-01-01T00:00:00Z", "stripe_charge_id": "ch_123"}}`),
		ResponseCode:  http.StatusCreated,
	}
	workflow := benchWorkflow()

	for b.Loop() {
		response, err := engine.Execute(ctx, request, workflow)
		require.NoError(b, err)
		require.True(b, response.Replayed)
	}
}

// BenchmarkExecuteReplayFromDatabase replays a finished key that the
// caller has not read: the key phase's transaction finds it (the insert
// conflicts, the key is read FOR UPDATE) and the engine replays it.
func BenchmarkExecuteReplayFromDatabase(b *testing.B) {
	ctx := b.Context()
	tx := dbtest.Tx(ctx, b)
	user := testfactory.User(ctx, b, tx, nil)
	key := newKey(ctx, b, tx, user, &testfactory.IdempotencyKeyOpts{
		RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointFinished),
		ResponseBody:  json.RawMessage(`{"message": "ok"}`),
		ResponseCode:  testfactory.Ptr(int32(http.StatusCreated)),
	})
	engine := newEngine(b, db.Savepoint{Tx: tx}, nil)
	workflow := benchWorkflow()

	for b.Loop() {
		response, err := engine.Execute(ctx, benchRequest(user, key.IdempotencyKey), workflow)
		require.NoError(b, err)
		require.True(b, response.Replayed)
	}
}

// BenchmarkExecuteNewKeyParallel runs new keys of distinct users from
// GOMAXPROCS×4 goroutines on a database of its own, at both isolation
// levels, and reports the transactions retried per request: at
// SERIALIZABLE, distinct keys conflict through B-tree page predicate
// locks.
func BenchmarkExecuteNewKeyParallel(b *testing.B) {
	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		b.Run(string(isolation), func(b *testing.B) {
			ctx := b.Context()
			pool := dbtest.NewDatabase(b)
			var retries, conflicts, users atomic.Int64
			engine := newEngine(b, pool, &idempotency.EngineConfig{
				Isolation:   isolation,
				RetriedFunc: func(error) { retries.Add(1) },
			})
			workflow := benchWorkflow()
			b.SetParallelism(4)
			b.ResetTimer()

			b.RunParallel(func(pb *testing.PB) {
				user := testfactory.User(ctx, b, pool, &testfactory.UserOpts{
					Email: testfactory.Ptr("bench-" + testfactory.KeyValue() + "@example.com"),
				})
				users.Add(1)
				for pb.Next() {
					_, err := engine.Execute(ctx, benchRequest(user, testfactory.KeyValue()), workflow)
					if err != nil {
						require.ErrorIs(b, err, idempotency.ErrConflict)
						conflicts.Add(1)
					}
				}
			})
			b.ReportMetric(float64(retries.Load())/float64(b.N), "retries/op")
			b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
		})
	}
}
