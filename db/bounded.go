package db

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrAcquireTimeout means no connection of the pool came free within the
// acquire timeout: the database is slow or stalled, or the pool is too
// small for the load.
var ErrAcquireTimeout = errors.New("no database connection available in time")

// BoundedConfig configures NewBounded. Zero fields take their defaults.
type BoundedConfig struct {
	// AcquireTimeout bounds the wait for a connection. Zero means
	// AcquireTimeoutDefault.
	AcquireTimeout time.Duration

	// StatementTimeout bounds each statement run outside a transaction, on
	// the client: a stalled connection answers nothing, and the server's
	// statement_timeout cannot end what never reached it. Zero means
	// StatementTimeoutDefault. (A transaction's statements are bounded by
	// the transaction's deadline, TxOptions.Timeout.)
	StatementTimeout time.Duration
}

// Bounded is an Executor over a pool whose waits are bounded: for a
// connection (AcquireTimeout) and, outside a transaction, for each
// statement (StatementTimeout). It is what the request path runs on.
type Bounded struct {
	config *BoundedConfig
	pool   *pgxpool.Pool
}

// NewBounded returns an Executor on pool with config's bounds. A nil config
// means every default.
func NewBounded(pool *pgxpool.Pool, config *BoundedConfig) (*Bounded, error) {
	var c BoundedConfig
	if config != nil {
		c = *config
	}
	c.AcquireTimeout = cmp.Or(c.AcquireTimeout, AcquireTimeoutDefault)
	c.StatementTimeout = cmp.Or(c.StatementTimeout, StatementTimeoutDefault)
	switch {
	case c.AcquireTimeout < 0:
		return nil, fmt.Errorf("database: AcquireTimeout must not be negative, got %s", c.AcquireTimeout)
	case c.StatementTimeout < 0:
		return nil, fmt.Errorf("database: StatementTimeout must not be negative, got %s", c.StatementTimeout)
	}
	return &Bounded{config: &c, pool: pool}, nil
}

func (b *Bounded) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	acquireCtx, cancel := context.WithTimeout(ctx, b.config.AcquireTimeout)
	defer cancel()
	conn, err := b.pool.Acquire(acquireCtx)
	if err != nil {
		if ctx.Err() == nil && acquireCtx.Err() != nil {
			return nil, fmt.Errorf("%w (waited %s): %w", ErrAcquireTimeout, b.config.AcquireTimeout, err)
		}
		return nil, fmt.Errorf("acquiring connection: %w", err)
	}
	return conn, nil
}

// Exec runs sql on a connection of the pool.
func (b *Bounded) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	conn, err := b.acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Release()
	ctx, cancel := context.WithTimeout(ctx, b.config.StatementTimeout)
	defer cancel()
	return conn.Exec(ctx, sql, args...)
}

// Query runs sql on a connection of the pool, which goes back to it when
// the rows are closed.
func (b *Bounded) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	conn, err := b.acquire(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.config.StatementTimeout)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		cancel()
		conn.Release()
		return nil, err
	}
	return &boundedRows{Rows: rows, release: sync.OnceFunc(func() { cancel(); conn.Release() })}, nil
}

// QueryRow runs sql on a connection of the pool, which goes back to it once
// the row is scanned.
func (b *Bounded) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	conn, err := b.acquire(ctx)
	if err != nil {
		return errRow{err}
	}
	ctx, cancel := context.WithTimeout(ctx, b.config.StatementTimeout)
	return &boundedRow{row: conn.QueryRow(ctx, sql, args...), release: func() { cancel(); conn.Release() }}
}

// BeginTx begins a transaction on a connection of the pool, which goes back
// to it at commit or rollback.
func (b *Bounded) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	conn, err := b.acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		conn.Release()
		return nil, err
	}
	return &boundedTx{Tx: tx, release: sync.OnceFunc(conn.Release)}, nil
}

type boundedRows struct {
	pgx.Rows
	release func()
}

func (r *boundedRows) Close() {
	r.Rows.Close()
	r.release()
}

func (r *boundedRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.release()
	return false
}

type boundedRow struct {
	row     pgx.Row
	release func()
}

func (r *boundedRow) Scan(dest ...any) error {
	defer r.release()
	return r.row.Scan(dest...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type boundedTx struct {
	pgx.Tx
	release func()
}

func (t *boundedTx) Commit(ctx context.Context) error {
	defer t.release()
	return t.Tx.Commit(ctx)
}

func (t *boundedTx) Rollback(ctx context.Context) error {
	err := t.Tx.Rollback(ctx)
	if !errors.Is(err, pgx.ErrTxClosed) {
		t.release()
	}
	return err
}

// IsUnavailable reports whether err means the database could not be reached
// or did not answer in time (as opposed to answering with an error about
// the request): a connection refused, reset or timed out, no connection
// free in time, a statement or transaction past its deadline, a commit in
// doubt, or the server shutting down. The request may be retried once the
// database is back.
func IsUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57": // connection exception, insufficient resources, operator intervention
			return true
		}
		return false
	}
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	return errors.Is(err, ErrAcquireTimeout) || errors.Is(err, ErrCommitInDoubt) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err)
}
