package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
)

// The tiny workflow these tests run, the engine's own: nothing of rides.
const (
	// middlePoint is its one recovery point between started and finished.
	middlePoint = "widget_reserved"

	testPath     = "/widgets"
	testWorkflow = "POST /widgets"
)

// newWorkflow is the tiny workflow's phases: started moves to middlePoint,
// whose step finishes the key with 201 and body.
func newWorkflow(body string) *idempotency.Phases {
	return &idempotency.Phases{
		Start: moveTo(middlePoint),
		Steps: map[string]idempotency.StepFunc{
			middlePoint: func(ctx context.Context, run *idempotency.Run) error {
				return run.AtomicPhase(ctx, finish(body))
			},
		},
	}
}

func moveTo(recoveryPoint string) idempotency.PhaseFunc {
	return func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
		return idempotency.RecoveryPoint(recoveryPoint), nil
	}
}

func finish(body string) idempotency.PhaseFunc {
	return func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
		return idempotency.Finish(http.StatusCreated, json.RawMessage(body)), nil
	}
}

// registerWorkflow registers the tiny workflow with engine; restored keys
// finish with {"restored": true}.
func registerWorkflow(t testing.TB, engine *idempotency.Engine) {
	t.Helper()
	require.NoError(t, engine.Register(&idempotency.Workflow{
		Name:           testWorkflow,
		RecoveryPoints: []string{middlePoint},
		Restore: func(context.Context, *db.IdempotencyKey) (*idempotency.Phases, error) {
			return newWorkflow(`{"restored": true}`), nil
		},
	}))
}

// newKey inserts a key of the tiny workflow: testfactory's key, with its
// workflow and path unless opts name others.
func newKey(ctx context.Context, t testing.TB, exec db.DBTX, user *db.User, opts *testfactory.IdempotencyKeyOpts) *db.IdempotencyKey {
	t.Helper()
	if opts == nil {
		opts = &testfactory.IdempotencyKeyOpts{}
	}
	if opts.Workflow == nil {
		opts.Workflow = testfactory.Ptr(testWorkflow)
	}
	if opts.RequestPath == nil {
		opts.RequestPath = testfactory.Ptr(testPath)
	}
	return testfactory.IdempotencyKey(ctx, t, exec, user, opts)
}

// newRequest asks for what newKey's keys were created for.
func newRequest(user *db.User, key string) *idempotency.Request {
	return &idempotency.Request{
		Key:      key,
		Method:   http.MethodPost,
		Params:   testfactory.ValidParams,
		Path:     testPath,
		UserID:   user.ID,
		Workflow: testWorkflow,
	}
}

// noTx is an executor on which no transaction can begin.
type noTx struct {
	db.Savepoint
}

func (noTx) BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error) {
	return nil, errors.New("no transaction expected")
}

type testBundle struct {
	exec db.Savepoint
	user *db.User
}

// newEngine returns an engine on exec with the tiny workflow registered,
// failing the test if config is rejected.
func newEngine(t testing.TB, exec db.Executor, config *idempotency.EngineConfig) *idempotency.Engine {
	t.Helper()
	engine, err := idempotency.NewEngine(exec, config)
	require.NoError(t, err)
	registerWorkflow(t, engine)
	return engine
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
	return &testBundle{exec: exec, user: testfactory.User(ctx, t, exec, nil)}
}

func (b *testBundle) reload(t *testing.T, key *db.IdempotencyKey) *db.IdempotencyKey {
	t.Helper()
	key, err := db.New().IdempotencyKeyGetByID(context.Background(), b.exec, key.ID)
	require.NoError(t, err)
	return key
}

func (b *testBundle) dbNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, b.exec.QueryRow(context.Background(), "SELECT now()").Scan(&now))
	return now
}

func TestNewEngine(t *testing.T) {
	t.Parallel()

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		engine := newEngine(t, nil, nil)
		require.Equal(t, idempotency.LockTimeoutDefault, engine.LockTimeout())
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			config *idempotency.EngineConfig
			want   string
		}{
			{&idempotency.EngineConfig{Isolation: pgx.RepeatableRead}, "Isolation"},
			{&idempotency.EngineConfig{LockTimeout: -time.Second}, "LockTimeout must not be negative, got -1s"},
			{&idempotency.EngineConfig{MaxAttempts: -1}, "MaxAttempts"},
		} {
			_, err := idempotency.NewEngine(nil, tt.config)
			require.ErrorContains(t, err, tt.want)
		}
	})
}

func TestExecute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ConflictAfterBoundedRetries", func(t *testing.T) {
		t.Parallel()
		const maxAttempts = 4
		bundle := setup(t)
		var attempts, retries atomic.Int32
		engine := newEngine(t, bundle.exec, &idempotency.EngineConfig{
			Hooks: &idempotency.Hooks{BeforeCommit: func(_ context.Context, recoveryPoint string) error {
				if recoveryPoint != idempotency.RecoveryPointFinished {
					return nil
				}
				attempts.Add(1)
				return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
			}},
			MaxAttempts: maxAttempts,
			RetriedFunc: func(error) { retries.Add(1) },
		})
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(middlePoint),
		})

		_, err := engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), newWorkflow(`{}`))

		require.ErrorIs(t, err, idempotency.ErrConflict)
		require.Equal(t, int32(maxAttempts), attempts.Load())
		require.Equal(t, int32(maxAttempts-1), retries.Load())
		reloaded := bundle.reload(t, key)
		require.Equal(t, middlePoint, reloaded.RecoveryPoint)
		require.Nil(t, reloaded.LockedAt)
		require.Nil(t, reloaded.ResponseCode)
	})

	t.Run("KnownFinishedKeyReplaysWithoutTransaction", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, noTx{bundle.exec}, nil)
		req := newRequest(bundle.user, testfactory.KeyValue())
		req.Params = json.RawMessage(`{"target_lon": 0, "target_lat": 0, "origin_lon": 0, "origin_lat": 0}`)
		req.Known = &idempotency.KnownKey{
			Method:        http.MethodPost,
			Params:        testfactory.ValidParams,
			Path:          testPath,
			RecoveryPoint: idempotency.RecoveryPointFinished,
			ResponseBody:  json.RawMessage(`{"detail": "declined", "status": 402}`),
			ResponseCode:  http.StatusPaymentRequired,
		}

		response, err := engine.Execute(ctx, req, newWorkflow(`{}`))

		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Body: []byte(`{"detail":"declined","status":402}`), Replayed: true, Status: http.StatusPaymentRequired}, response)

		req.Params = json.RawMessage(`{"target_lon": 1, "target_lat": 0, "origin_lon": 0, "origin_lat": 0}`)
		_, err = engine.Execute(ctx, req, newWorkflow(`{}`))
		require.ErrorIs(t, err, idempotency.ErrParamsMismatch)
	})

	t.Run("LiveLockRefused", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			LockedAt: testfactory.Ptr(bundle.dbNow(t).Add(-idempotency.LockTimeoutDefault + time.Millisecond)),
		})

		_, err := engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), newWorkflow(`{}`))

		require.ErrorIs(t, err, idempotency.ErrRequestInProgress)
		require.Equal(t, *key, *bundle.reload(t, key))
	})

	t.Run("LockTakenWithFreshToken", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		staleToken := uuid.New()
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			LastRunAt: testfactory.Ptr(bundle.dbNow(t).Add(-time.Hour)),
			LockedAt:  testfactory.Ptr(bundle.dbNow(t).Add(-idempotency.LockTimeoutDefault - time.Millisecond)),
			LockToken: &staleToken,
		})
		var locked db.IdempotencyKey
		wf := newWorkflow(`{}`)
		wf.Start = func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
			locked = *key
			return idempotency.RecoveryPoint(middlePoint), nil
		}

		_, err := engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), wf)

		require.NoError(t, err)
		require.NotNil(t, locked.LockToken)
		require.NotEqual(t, staleToken, *locked.LockToken)
		require.Equal(t, bundle.dbNow(t), *locked.LockedAt, "the database's clock")
		require.Equal(t, bundle.dbNow(t), locked.LastRunAt)
		require.Equal(t, int32(2), locked.RunCount)
	})

	t.Run("NewKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		var committed []string
		engine := newEngine(t, bundle.exec, &idempotency.EngineConfig{Hooks: &idempotency.Hooks{
			AfterCommit: func(_ context.Context, recoveryPoint string) error {
				committed = append(committed, recoveryPoint)
				return nil
			},
		}})
		req := newRequest(bundle.user, testfactory.KeyValue())

		response, err := engine.Execute(ctx, req, newWorkflow(`{"b": 1, "a": [1,  2]}`))

		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Body: []byte(`{"a":[1,2],"b":1}`), Status: http.StatusCreated}, response)
		require.Equal(t, []string{middlePoint, idempotency.RecoveryPointFinished}, committed,
			"a new key is inserted in the start phase's transaction")
		replay, err := engine.Execute(ctx, req, newWorkflow(`{"other": true}`))
		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Body: response.Body, Replayed: true, Status: http.StatusCreated}, replay)
	})

	t.Run("ParamsComparedAsJSONValues", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		finished := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointFinished),
			ResponseBody:  json.RawMessage(`{"ok": true}`),
			ResponseCode:  testfactory.Ptr(int32(http.StatusCreated)),
		})
		unfinished := newKey(ctx, t, bundle.exec, bundle.user, nil)

		for _, key := range []*db.IdempotencyKey{finished, unfinished} {
			for name, change := range map[string]func(*idempotency.Request){
				"Params": func(req *idempotency.Request) {
					req.Params = json.RawMessage(`{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0.5}`)
				},
				"ExtraParam": func(req *idempotency.Request) {
					req.Params = json.RawMessage(`{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "x": 0}`)
				},
				"Method": func(req *idempotency.Request) { req.Method = http.MethodPut },
				"Path":   func(req *idempotency.Request) { req.Path = testPath + "/1" },
			} {
				req := newRequest(bundle.user, key.IdempotencyKey)
				change(req)
				_, err := engine.Execute(ctx, req, newWorkflow(`{}`))
				require.ErrorIs(t, err, idempotency.ErrParamsMismatch, "%s at %s", name, key.RecoveryPoint)
				require.Equal(t, *key, *bundle.reload(t, key), "a mismatch leaves the key as it was")
			}
		}

		// 0 and 0.0 are one number, and the order of members is free.
		req := newRequest(bundle.user, finished.IdempotencyKey)
		req.Params = json.RawMessage(`{"target_lon":0,"target_lat":0,"origin_lon":0,"origin_lat":0}`)
		response, err := engine.Execute(ctx, req, newWorkflow(`{}`))
		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Body: []byte(`{"ok":true}`), Replayed: true, Status: http.StatusCreated}, response)
	})

	t.Run("StepErrorUnlocksKeyAtRecoveryPoint", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		errStep := errors.New("step failed")
		wf := newWorkflow(`{}`)
		wf.Steps[middlePoint] = func(context.Context, *idempotency.Run) error { return errStep }
		value := testfactory.KeyValue()

		_, err := engine.Execute(ctx, newRequest(bundle.user, value), wf)

		require.ErrorIs(t, err, errStep)
		key, err := db.New().IdempotencyKeyGetForUpdate(ctx, bundle.exec, &db.IdempotencyKeyGetForUpdateParams{
			IdempotencyKey: value, LockTimeoutSeconds: 1, UserID: bundle.user.ID,
		})
		require.NoError(t, err)
		require.Equal(t, middlePoint, key.IdempotencyKey.RecoveryPoint)
		require.Nil(t, key.IdempotencyKey.LockedAt)
		require.Nil(t, key.IdempotencyKey.LockToken)
	})

	t.Run("UnknownRecoveryPointUnlocksKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr("written_by_a_newer_version"),
		})

		_, err := engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), newWorkflow(`{}`))

		require.ErrorIs(t, err, idempotency.ErrUnknownRecoveryPoint)
		reloaded := bundle.reload(t, key)
		require.Equal(t, "written_by_a_newer_version", reloaded.RecoveryPoint)
		require.Nil(t, reloaded.LockedAt)
		require.Nil(t, reloaded.LockToken)
		require.Equal(t, int32(2), reloaded.RunCount, "the key was locked, then unlocked")
	})
}

// TestLockTakeover stalls a request past the lock timeout: another request
// takes the key over, and the stalled one can no longer write, nor release
// the lock it lost.
func TestLockTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	engine := newEngine(t, pool, nil)
	user := testfactory.User(ctx, t, pool, nil)
	req := newRequest(user, testfactory.KeyValue())

	// start runs req in the background with a workflow whose step at
	// middlePoint reports the lock token it holds, waits for resume, then
	// stages a job named after body and finishes with body.
	type stall struct {
		done   chan error
		locked chan uuid.UUID
		resume chan struct{}
	}
	start := func(body string) *stall {
		s := &stall{locked: make(chan uuid.UUID, 1), resume: make(chan struct{}), done: make(chan error, 1)}
		wf := newWorkflow(body)
		wf.Steps[middlePoint] = func(ctx context.Context, run *idempotency.Run) error {
			s.locked <- *run.Key().LockToken
			<-s.resume
			return run.AtomicPhase(ctx, func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
				// Queued after the lock check, in the same round trip.
				err := db.New().StagedJobInsert(ctx, tx, &db.StagedJobInsertParams{JobName: "wrote", JobArgs: json.RawMessage(body)})
				if err != nil {
					return nil, err
				}
				return finish(body)(ctx, tx, key)
			})
		}
		go func() {
			_, err := engine.Execute(ctx, req, wf)
			s.done <- err
		}()
		return s
	}

	first := start(`{"by": "first"}`)
	firstToken := <-first.locked
	// The first request stalls past the lock timeout, by the database's
	// clock.
	_, err := pool.Exec(ctx, "UPDATE idempotency_keys SET locked_at = now() - make_interval(secs => $1) WHERE user_id = $2",
		(idempotency.LockTimeoutDefault + time.Second).Seconds(), user.ID)
	require.NoError(t, err)

	second := start(`{"by": "second"}`)
	secondToken := <-second.locked
	require.NotEqual(t, firstToken, secondToken)

	close(first.resume)
	require.ErrorIs(t, <-first.done, idempotency.ErrLockLost)
	staged, err := db.New().StagedJobCount(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, staged, "the first request's phase must write nothing")
	key, err := db.New().IdempotencyKeyGetForUpdate(ctx, pool, &db.IdempotencyKeyGetForUpdateParams{
		IdempotencyKey: req.Key, LockTimeoutSeconds: idempotency.LockTimeoutDefault.Seconds(), UserID: user.ID,
	})
	require.NoError(t, err)
	require.True(t, key.LockLive, "the second request keeps its lock")
	require.Equal(t, secondToken, *key.IdempotencyKey.LockToken)
	require.Equal(t, middlePoint, key.IdempotencyKey.RecoveryPoint)

	close(second.resume)
	require.NoError(t, <-second.done)
	response, err := engine.Execute(ctx, req, newWorkflow(`{}`))
	require.NoError(t, err)
	require.Equal(t, `{"by":"second"}`, string(response.Body))
	require.True(t, response.Replayed)
}
