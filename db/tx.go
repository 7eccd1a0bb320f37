package db

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Executor is what code that opens its own transactions runs on. A
// *pgxpool.Pool satisfies it; so does Savepoint, which is how the same code
// runs inside a test's rolled-back transaction.
type Executor interface {
	DBTX
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Savepoint adapts a transaction to Executor: BeginTx opens a savepoint in
// it. The isolation level asked for is ignored, because a savepoint cannot
// change it; the outer transaction's level applies.
type Savepoint struct {
	pgx.Tx
}

// BeginTx opens a savepoint in the wrapped transaction.
func (s Savepoint) BeginTx(ctx context.Context, _ pgx.TxOptions) (pgx.Tx, error) {
	return s.Begin(ctx)
}

// ParseIsolation parses an isolation level as written in configuration:
// read_committed or serializable.
func ParseIsolation(level string) (pgx.TxIsoLevel, error) {
	switch strings.ToLower(strings.ReplaceAll(level, " ", "_")) {
	case "read_committed":
		return pgx.ReadCommitted, nil
	case "serializable":
		return pgx.Serializable, nil
	}
	return "", fmt.Errorf("unknown isolation level %q (want read_committed or serializable)", level)
}

// TxOptions configures WithTx.
type TxOptions struct {
	// Isolation is the transaction's isolation level. Empty means the
	// server's default (READ COMMITTED).
	Isolation pgx.TxIsoLevel

	// MaxAttempts is how many times a transaction that fails with a
	// serialization failure or a deadlock is run in all. Zero means
	// TxMaxAttemptsDefault.
	MaxAttempts int

	// RetriedFunc, if set, is called before each retry with the error that
	// caused it.
	RetriedFunc func(err error)

	// Timeout bounds each attempt, from BEGIN (and the wait for a
	// connection) to COMMIT. Zero means no bound but ctx's.
	Timeout time.Duration
}

// ErrCommitInDoubt means a transaction's COMMIT may or may not have taken
// effect: the connection failed, or the context ended, before the server's
// answer arrived. The caller reads again what the transaction wrote to find
// out.
var ErrCommitInDoubt = errors.New("commit outcome unknown")

const (
	// TxMaxAttemptsDefault is how many times WithTx runs a transaction that
	// keeps failing with retryable errors before it gives up.
	TxMaxAttemptsDefault = 10

	txBackoffBase = 2 * time.Millisecond
	txBackoffMax  = 200 * time.Millisecond

	// rollbackTimeout bounds a rollback that runs after the request's context
	// is gone.
	rollbackTimeout = 5 * time.Second
)

// WithTx runs fn in a transaction on exec and commits it. A transaction that
// fails with a serialization failure or a deadlock, whether in fn or at
// commit, is rolled back and run again after a jittered, growing pause, up to
// MaxAttempts times in all; fn must therefore be safe to run more than once,
// and must make no call outside the database. Any other error rolls back and
// is returned as it is.
func WithTx(ctx context.Context, exec Executor, opts TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return retry(ctx, opts, func() error {
		return runTx(ctx, exec, opts.Isolation, opts.Timeout, fn)
	})
}

// retry runs attempt until it succeeds, fails with an error that is not
// retryable, or has run opts.MaxAttempts times, with a growing pause
// between attempts.
func retry(ctx context.Context, opts TxOptions, attempt func() error) error {
	maxAttempts := opts.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = TxMaxAttemptsDefault
	}
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !IsRetryable(err) || n >= maxAttempts {
			return err
		}
		if opts.RetriedFunc != nil {
			opts.RetriedFunc(err)
		}
		if err := sleep(ctx, backoff(n)); err != nil {
			return err
		}
	}
}

// WithTxV is WithTx for a function that returns a value.
func WithTxV[T any](ctx context.Context, exec Executor, opts TxOptions, fn func(ctx context.Context, tx pgx.Tx) (T, error)) (T, error) {
	var result T
	err := WithTx(ctx, exec, opts, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		result, err = fn(ctx, tx)
		return err
	})
	return result, err
}

func runTx(ctx context.Context, exec Executor, isolation pgx.TxIsoLevel, timeout time.Duration, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tx, err := exec.BeginTx(ctx, pgx.TxOptions{IsoLevel: isolation})
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		// Roll back even when ctx is done, so the connection goes back clean.
		rollbackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rollbackCtx) // a no-op after a commit
	}()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) || errors.Is(err, pgx.ErrTxCommitRollback) {
			// The server answered: the transaction rolled back.
			return fmt.Errorf("committing transaction: %w", err)
		}
		return fmt.Errorf("committing transaction: %w: %w", ErrCommitInDoubt, err)
	}
	return nil
}

// backoff is a random pause in [0, min(base·2^attempt, max)): full jitter
// spreads out transactions that conflicted with each other.
func backoff(attempt int) time.Duration {
	ceiling := txBackoffMax
	if attempt < 16 { // past that, base·2^attempt is over the cap, then overflows
		ceiling = min(txBackoffBase<<attempt, txBackoffMax)
	}
	return rand.N(ceiling) + time.Microsecond
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
