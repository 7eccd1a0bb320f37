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

// commitFault is what faultyTx does with a phase's commit.
type commitFault int

const (
	commitOK              commitFault = iota
	commitLandsAnswerLost             // it commits, and the answer is lost
	commitLost                        // the connection breaks before COMMIT: the server rolls back
)

// faultyTx wraps a test's transaction, under db.Savepoint: each batch that
// commits a pipelined phase (its last statement releases the phase's
// savepoint) is sent as fault says, and the first failUnlocks unlocks fail
// as if the database were down.
type faultyTx struct {
	pgx.Tx
	fault       func() commitFault
	failUnlocks atomic.Int32
	unlocks     atomic.Int32
}

func newFaultyExec(tx pgx.Tx, fault func() commitFault) (db.Savepoint, *faultyTx) {
	faulty := &faultyTx{Tx: tx, fault: fault}
	return db.Savepoint{Tx: faulty}, faulty
}

func (f *faultyTx) SendBatch(ctx context.Context, batch *pgx.Batch) pgx.BatchResults {
	n := len(batch.QueuedQueries)
	if f.fault == nil || n == 0 || !strings.HasPrefix(batch.QueuedQueries[n-1].SQL, "RELEASE SAVEPOINT") {
		return f.Tx.SendBatch(ctx, batch)
	}
	switch f.fault() {
	case commitLandsAnswerLost:
		return &lostAnswer{BatchResults: f.Tx.SendBatch(ctx, batch), left: n}
	case commitLost:
		sent := &pgx.Batch{QueuedQueries: batch.QueuedQueries[:n-1]}
		sent.Queue("ROLLBACK TO SAVEPOINT pipeline")
		return &lostAnswer{BatchResults: f.Tx.SendBatch(ctx, sent), left: n - 1}
	}
	return f.Tx.SendBatch(ctx, batch)
}

func (f *faultyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if strings.Contains(sql, "name: IdempotencyKeyUnlockByKey ") {
		f.unlocks.Add(1)
		if f.failUnlocks.Add(-1) >= 0 {
			return pgconn.CommandTag{}, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
		}
	}
	return f.Tx.Exec(ctx, sql, args...)
}

// lostAnswer is the results of a batch whose connection broke after the
// server answered its first left statements: the rest, and the end of the
// batch, read as a lost connection.
type lostAnswer struct {
	pgx.BatchResults
	left int
}

func (r *lostAnswer) Exec() (pgconn.CommandTag, error) {
	if r.left == 0 {
		return pgconn.CommandTag{}, errConnLost
	}
	r.left--
	return r.BatchResults.Exec()
}

func (r *lostAnswer) QueryRow() pgx.Row {
	if r.left == 0 {
		return errRow{}
	}
	r.left--
	return r.BatchResults.QueryRow()
}

func (r *lostAnswer) Close() error {
	if err := r.BatchResults.Close(); err != nil {
		return err
	}
	return errConnLost
}

type errRow struct{}

func (errRow) Scan(...any) error { return errConnLost }

func TestCommitInDoubt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// Every commit lands, and every one reports a lost connection: the
	// engine reads the key again, sees each phase committed, and goes on.
	t.Run("CommittedGoesOn", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		exec, _ := newFaultyExec(bundle.exec.Tx, func() commitFault { return commitLandsAnswerLost })
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
		exec, _ := newFaultyExec(bundle.exec.Tx, func() commitFault {
			if commits.Add(1) == 1 {
				return commitOK
			}
			return commitLost
		})
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
		exec, _ := newFaultyExec(bundle.exec.Tx, func() commitFault { return commitLost })
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
	exec, faulty := newFaultyExec(bundle.exec.Tx, nil)
	faulty.failUnlocks.Store(3)
	engine := newEngine(t, exec, nil)
	workflow := newWorkflow(`{}`)
	errStep := errors.New("step failed")
	workflow.Steps[middlePoint] = func(context.Context, *idempotency.Run) error { return errStep }
	_, err := engine.Execute(ctx, newRequest(bundle.user, "unlock-retried"), workflow)
	require.ErrorIs(t, err, errStep)

	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, engine.Close(closeCtx))
	require.Equal(t, int32(4), faulty.unlocks.Load(), "three failures, then the unlock")
	var locked int
	require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'unlock-retried' AND lock_token IS NOT NULL").Scan(&locked))
	require.Zero(t, locked)
}
