package idempotency_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
)

// errConnLost is what a commit whose connection broke returns: no answer
// from the server, so no PgError.
var errConnLost = errors.New("read tcp: connection reset by peer")

// faultyExec wraps a test's savepoint executor: each commit runs commit
// instead, and the first failUnlocks unlocks fail as if the database were
// down.
type faultyExec struct {
	db.Savepoint
	commit      func(ctx context.Context, tx pgx.Tx) error
	failUnlocks atomic.Int32
	unlocks     atomic.Int32
}

func (f *faultyExec) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := f.Savepoint.BeginTx(ctx, opts)
	if err != nil || f.commit == nil {
		return tx, err
	}
	return &faultyTx{Tx: tx, commit: f.commit}, nil
}

func (f *faultyExec) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if strings.Contains(sql, "name: IdempotencyKeyUnlock ") {
		f.unlocks.Add(1)
		if f.failUnlocks.Add(-1) >= 0 {
			return pgconn.CommandTag{}, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
		}
	}
	return f.Savepoint.Exec(ctx, sql, args...)
}

type faultyTx struct {
	pgx.Tx
	commit func(ctx context.Context, tx pgx.Tx) error
}

func (t *faultyTx) Commit(ctx context.Context) error { return t.commit(ctx, t.Tx) }

func TestCommitInDoubt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// Every commit lands, and every one reports a lost connection: the
	// engine reads the key again, sees each phase committed, and goes on.
	t.Run("CommittedGoesOn", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		exec := &faultyExec{Savepoint: bundle.exec, commit: func(ctx context.Context, tx pgx.Tx) error {
			require.NoError(t, tx.Commit(ctx))
			return errConnLost
		}}
		engine := newEngine(t, exec, nil)
		response, err := engine.Execute(ctx, newRequest(bundle.user, "in-doubt-committed"), newWorkflow(`{"ok":true}`))
		require.NoError(t, err)
		require.Equal(t, 201, response.Status)
		require.False(t, response.Replayed)
	})

	// Every commit is lost: the phase did not commit, the request fails,
	// and what it may hold is released.
	t.Run("NotCommittedFails", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		// The key phase commits; the next one is lost.
		var commits atomic.Int32
		exec := &faultyExec{Savepoint: bundle.exec, commit: func(ctx context.Context, tx pgx.Tx) error {
			if commits.Add(1) == 1 {
				return tx.Commit(ctx)
			}
			require.NoError(t, tx.Rollback(ctx))
			return errConnLost
		}}
		engine := newEngine(t, exec, nil)
		workflow := newWorkflow(`{"ok":true}`)
		_, err := engine.Execute(ctx, newRequest(bundle.user, "in-doubt-lost"), workflow)
		require.ErrorIs(t, err, db.ErrCommitInDoubt)
		key, err := db.New().IdempotencyKeyGetForUpdate(ctx, bundle.exec, &db.IdempotencyKeyGetForUpdateParams{
			IdempotencyKey: "in-doubt-lost", LockTimeoutSeconds: 90, UserID: bundle.user.ID,
		})
		require.NoError(t, err)
		require.Equal(t, middlePoint, key.IdempotencyKey.RecoveryPoint, "the lost phase did not commit")
		require.Nil(t, key.IdempotencyKey.LockToken, "the key is unlocked")
	})

	// The key phase's commit is lost: no key exists, and nothing is locked.
	t.Run("KeyPhaseLost", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		exec := &faultyExec{Savepoint: bundle.exec, commit: func(ctx context.Context, tx pgx.Tx) error {
			require.NoError(t, tx.Rollback(ctx))
			return errConnLost
		}}
		engine := newEngine(t, exec, nil)
		_, err := engine.Execute(ctx, newRequest(bundle.user, "in-doubt-key"), newWorkflow(`{}`))
		require.ErrorIs(t, err, db.ErrCommitInDoubt)
		var n int
		require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'in-doubt-key'").Scan(&n))
		require.Zero(t, n)
	})
}

// An unlock that fails while the database is down is retried in the
// background until it succeeds; Close waits for it.
func TestUnlockRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bundle := setup(t)
	exec := &faultyExec{Savepoint: bundle.exec}
	exec.failUnlocks.Store(3)
	engine := newEngine(t, exec, nil)
	workflow := newWorkflow(`{}`)
	errStep := errors.New("step failed")
	workflow.Steps[middlePoint] = func(context.Context, *idempotency.Run) error { return errStep }
	_, err := engine.Execute(ctx, newRequest(bundle.user, "unlock-retried"), workflow)
	require.ErrorIs(t, err, errStep)

	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, engine.Close(closeCtx))
	require.Equal(t, int32(4), exec.unlocks.Load(), "three failures, then the unlock")
	var locked int
	require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'unlock-retried' AND lock_token IS NOT NULL").Scan(&locked))
	require.Zero(t, locked)
}
