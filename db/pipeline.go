package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotQueueable means a query was asked of a Pipeline that cannot queue
// it: one that returns many rows (sqlc's :many). Run it before the
// transaction, or give it a query of one row.
var ErrNotQueueable = errors.New("a pipelined transaction queues statements of at most one row")

// pipelineSavepoint names the savepoint a Pipeline opens on a Savepoint
// executor.
const pipelineSavepoint = "pipeline"

// Pipeline is a transaction whose statements are queued and sent together,
// in one round trip: WithPipeline runs one. A transaction at read committed
// (the sessions' default, see NewPool) that is sent in one go needs no
// BEGIN and no COMMIT: the statements of one batch, up to its Sync, are one
// implicit transaction to PostgreSQL, which commits it at the Sync or rolls
// it back at the first statement that fails. Any other transaction (one
// that Flushes, one at another level, a savepoint) is sent with its BEGIN
// and its COMMIT.
// It is a DBTX, so sqlc's generated methods run on it, but they QUEUE their
// statement instead of running it:
//
//   - Exec queues the statement and returns an empty command tag: a query
//     that reports the rows it affected (sqlc's :execrows) reads zero, so
//     use :exec or :one.
//   - QueryRow queues the statement; Scan records where its row goes and
//     returns nil. The destinations are filled when the batch is sent (at
//     Flush or at commit), so a value a queued query returns cannot be read
//     before, nor passed to a statement queued after it: write dependent
//     statements as one (a CTE), or find the row in SQL.
//   - Query fails with ErrNotQueueable.
//
// A queued statement that fails (a constraint, a raised exception) makes
// PostgreSQL skip every statement queued after it, COMMIT included, and the
// transaction rolls back. A queued QueryRow that finds no row is not an
// error to PostgreSQL: the statements after it still run, and commit, and
// the commit reports ErrCommitInDoubt wrapping pgx.ErrNoRows. Queue only
// queries that return their row or fail.
type Pipeline struct {
	conn     pipelineConn
	begin    string
	commit   string
	rollback string
	release  func()

	batch    *pgx.Batch
	reads    []func(pgx.BatchResults) error
	implicit bool // sent in one go, it may run as an implicit transaction
	sent     bool // something was sent: the transaction began on the server
	ended    bool // its COMMIT was sent and answered, or its answer was lost
}

// pipelineConn is what a Pipeline sends on: a connection of the pool, or
// the transaction a Savepoint wraps.
type pipelineConn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, batch *pgx.Batch) pgx.BatchResults
}

// WithPipeline runs fn in a pipelined transaction on exec and commits it:
// fn queues the transaction's statements (Pipeline), and they are sent with
// BEGIN and COMMIT in one round trip once fn returns, or in two if fn calls
// Flush to read before it writes. On a Savepoint executor the transaction is
// a savepoint, as with WithTx.
//
// It keeps WithTx's rules: a serialization failure or a deadlock rolls back
// and runs fn again, on a new Pipeline, after a growing pause, up to
// opts.MaxAttempts times in all; opts.Timeout bounds each attempt; any other
// error rolls back (one more round trip) and is returned as it is. An error
// that leaves unknown whether COMMIT took effect (the connection failed, or
// the context ended, after the batch was sent) wraps ErrCommitInDoubt.
func WithPipeline(ctx context.Context, exec Executor, opts TxOptions, fn func(ctx context.Context, tx *Pipeline) error) error {
	return retry(ctx, opts, func() error {
		return runPipeline(ctx, exec, opts.Isolation, opts.Timeout, fn)
	})
}

// WithPipelineV is WithPipeline for a function that returns a value.
func WithPipelineV[T any](ctx context.Context, exec Executor, opts TxOptions, fn func(ctx context.Context, tx *Pipeline) (T, error)) (T, error) {
	var result T
	err := WithPipeline(ctx, exec, opts, func(ctx context.Context, tx *Pipeline) error {
		var err error
		result, err = fn(ctx, tx)
		return err
	})
	return result, err
}

func runPipeline(ctx context.Context, exec Executor, isolation pgx.TxIsoLevel, timeout time.Duration,
	fn func(ctx context.Context, tx *Pipeline) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tx, err := newPipeline(ctx, exec, isolation)
	if err != nil {
		return err
	}
	defer tx.close(ctx)
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.commitBatch(ctx)
}

// newPipeline returns a Pipeline on a connection of exec, held until close.
// Nothing is sent yet.
func newPipeline(ctx context.Context, exec Executor, isolation pgx.TxIsoLevel) (*Pipeline, error) {
	tx := &Pipeline{
		begin:    "BEGIN",
		commit:   "COMMIT",
		rollback: "ROLLBACK",
		release:  func() {},
		batch:    &pgx.Batch{},
	}
	if isolation != "" {
		tx.begin += " ISOLATION LEVEL " + strings.ToUpper(string(isolation))
	}
	// The sessions of the pools of NewPool run at read committed by
	// default; an implicit transaction runs at the session's default.
	tx.implicit = isolation == "" || isolation == pgx.ReadCommitted
	switch exec := exec.(type) {
	case Savepoint:
		// A savepoint cannot change the isolation level: the outer
		// transaction's applies.
		tx.conn = exec.Tx
		tx.implicit = false
		tx.begin = "SAVEPOINT " + pipelineSavepoint
		tx.commit = "RELEASE SAVEPOINT " + pipelineSavepoint
		tx.rollback = "ROLLBACK TO SAVEPOINT " + pipelineSavepoint
	case *Bounded:
		conn, err := exec.acquire(ctx)
		if err != nil {
			return nil, err
		}
		tx.conn, tx.release = conn, conn.Release
	case *pgxpool.Pool:
		conn, err := exec.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("acquiring connection: %w", err)
		}
		tx.conn, tx.release = conn, conn.Release
	default:
		return nil, fmt.Errorf("%T cannot run a pipelined transaction", exec)
	}
	return tx, nil
}

// Exec queues sql. It returns an empty command tag: the statement has not
// run yet.
func (p *Pipeline) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	p.queueExec(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Query refuses: a pipelined transaction queues statements of at most one
// row (ErrNotQueueable).
func (p *Pipeline) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, ErrNotQueueable
}

// QueryRow queues sql. The returned row's Scan records its destinations,
// which are filled when the batch is sent (Flush, or commit).
func (p *Pipeline) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	p.batch.Queue(sql, args...)
	row := &queuedRow{}
	p.reads = append(p.reads, func(results pgx.BatchResults) error {
		if row.dest == nil {
			_, err := results.Exec()
			return err
		}
		return results.QueryRow().Scan(row.dest...)
	})
	return row
}

// Flush sends the statements queued so far (with BEGIN, the first time) and
// waits for their results, so that the values they scan can be read; the
// transaction stays open. A queued QueryRow that found no row makes it
// return pgx.ErrNoRows, and the transaction can go on.
func (p *Pipeline) Flush(ctx context.Context) error {
	if err := p.send(ctx, true); err != nil {
		return fmt.Errorf("flushing pipelined transaction: %w", err)
	}
	return nil
}

func (p *Pipeline) queueExec(sql string, args ...any) {
	p.batch.Queue(sql, args...)
	p.reads = append(p.reads, func(results pgx.BatchResults) error {
		_, err := results.Exec()
		return err
	})
}

// send sends the queue, BEGIN first if begin is set and the transaction has
// not begun, and reads every result in order, stopping at the first error.
func (p *Pipeline) send(ctx context.Context, begin bool) error {
	batch, reads := p.batch, p.reads
	p.batch, p.reads = &pgx.Batch{}, nil
	if begin && !p.sent {
		begin := &pgx.Batch{}
		begin.Queue(p.begin)
		begin.QueuedQueries = append(begin.QueuedQueries, batch.QueuedQueries...)
		batch = begin
		reads = append([]func(pgx.BatchResults) error{func(results pgx.BatchResults) error {
			_, err := results.Exec()
			return err
		}}, reads...)
	}
	if batch.Len() == 0 {
		return nil
	}
	p.sent = true
	results := p.conn.SendBatch(ctx, batch)
	var err error
	for _, read := range reads {
		if err = read(results); err != nil {
			break
		}
	}
	if closeErr := results.Close(); err == nil {
		err = closeErr
	}
	return err
}

// commitBatch sends what is queued with COMMIT, or, for a transaction
// sent in one go that may be implicit, as an implicit transaction.
func (p *Pipeline) commitBatch(ctx context.Context) error {
	implicit := p.implicit && !p.sent
	if !implicit {
		p.queueExec(p.commit)
	}
	err := p.send(ctx, !implicit)
	if err == nil {
		p.ended = true
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: the statement failed, and the ones after
		// it, COMMIT included, were skipped; an implicit transaction
		// has ended, rolled back.
		p.ended = implicit
		return fmt.Errorf("committing pipelined transaction: %w", err)
	}
	// The server decides alone: it commits what reached COMMIT, and rolls
	// back a transaction whose connection broke before.
	p.ended = true
	return fmt.Errorf("committing pipelined transaction: %w: %w", ErrCommitInDoubt, err)
}

// close rolls back a transaction that began and did not end, and gives
// the connection back. It runs even when ctx is done, so the connection
// goes back clean.
func (p *Pipeline) close(ctx context.Context) {
	defer p.release()
	if !p.sent || p.ended {
		return
	}
	rollbackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_, _ = p.conn.Exec(rollbackCtx, p.rollback) // a broken connection is dropped by the pool
}

// queuedRow is the row of a queued QueryRow: Scan records its destinations.
type queuedRow struct {
	dest []any
}

func (r *queuedRow) Scan(dest ...any) error {
	r.dest = dest
	return nil
}
