package db

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of PoolConfig and BoundedConfig: the database's deadlines, each
// far above what the operation takes on a healthy database (a phase's
// transaction takes a few milliseconds, its statements under one; opening a
// connection on the loopback, about 5 ms) and well inside a request's
// deadline, so that a database that is down or stalled is answered with a
// 503 in seconds rather than waited for.
const (
	// ConnectTimeoutDefault bounds opening one connection.
	ConnectTimeoutDefault = 3 * time.Second

	// AcquireTimeoutDefault bounds the wait for a free connection of the
	// pool.
	AcquireTimeoutDefault = 2 * time.Second

	// StatementTimeoutDefault bounds each statement, on the server
	// (statement_timeout) and on the client.
	StatementTimeoutDefault = 2 * time.Second

	// TxTimeoutDefault bounds each transaction, from the wait for its
	// connection to its commit. The server ends a transaction left idle
	// for twice as long (idle_in_transaction_session_timeout).
	TxTimeoutDefault = 5 * time.Second
)

// PoolConfig configures NewPoolWithConfig. Zero fields take their defaults.
type PoolConfig struct {
	// ConnectTimeout bounds opening one connection. Zero means
	// ConnectTimeoutDefault.
	ConnectTimeout time.Duration

	// MaxConns is the most connections the pool opens. Zero means pgx's
	// default (the larger of 4 and the number of CPUs).
	MaxConns int32

	// StatementTimeout is the server's statement_timeout on every
	// connection. Zero means StatementTimeoutDefault.
	StatementTimeout time.Duration

	// TxTimeout is the longest a transaction is expected to last: the server
	// ends a session idle in a transaction for twice as long (a client that
	// vanished mid-transaction must not hold its row locks for ever). Zero
	// means TxTimeoutDefault.
	TxTimeout time.Duration
}

func (c *PoolConfig) withDefaults() *PoolConfig {
	var config PoolConfig
	if c != nil {
		config = *c
	}
	config.ConnectTimeout = cmp.Or(config.ConnectTimeout, ConnectTimeoutDefault)
	config.StatementTimeout = cmp.Or(config.StatementTimeout, StatementTimeoutDefault)
	config.TxTimeout = cmp.Or(config.TxTimeout, TxTimeoutDefault)
	return &config
}

func (c *PoolConfig) validate() error {
	switch {
	case c.ConnectTimeout < 0:
		return fmt.Errorf("ConnectTimeout must not be negative, got %s", c.ConnectTimeout)
	case c.MaxConns < 0:
		return fmt.Errorf("MaxConns must not be negative, got %d", c.MaxConns)
	case c.StatementTimeout < 0:
		return fmt.Errorf("StatementTimeout must not be negative, got %s", c.StatementTimeout)
	case c.TxTimeout < 0:
		return fmt.Errorf("TxTimeout must not be negative, got %s", c.TxTimeout)
	}
	return nil
}

// NewPool connects to the database at databaseURL with at most maxConns
// connections (0: pgx's default) and checks that it answers. Only the
// connect timeout is bounded: the tools that use it (migrate, the tests)
// run statements that may rightly take long. Its error names the URL
// without its password.
func NewPool(ctx context.Context, databaseURL string, maxConns int32) (*pgxpool.Pool, error) {
	return newPool(ctx, databaseURL, &PoolConfig{ConnectTimeout: ConnectTimeoutDefault, MaxConns: maxConns}, false)
}

// NewPoolWithConfig connects to the database at databaseURL with config's
// bounds and checks that it answers. A nil config means every default.
// Settings in the URL's query (statement_timeout=...) take precedence.
func NewPoolWithConfig(ctx context.Context, databaseURL string, config *PoolConfig) (*pgxpool.Pool, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("database pool: %w", err)
	}
	return newPool(ctx, databaseURL, config, true)
}

func newPool(ctx context.Context, databaseURL string, config *PoolConfig, serverTimeouts bool) (*pgxpool.Pool, error) {
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL %s: %w", RedactURL(databaseURL), err)
	}
	if config.MaxConns > 0 {
		poolConfig.MaxConns = config.MaxConns
	}
	connConfig := poolConfig.ConnConfig
	// Every session defaults to read committed, whatever the server's or
	// the URL's setting: River expects it, and a pipelined transaction sent
	// in one go runs as an implicit transaction at the session's level
	// (Pipeline). A transaction that needs another level asks for it
	// (TxOptions.Isolation).
	connConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	if connConfig.ConnectTimeout == 0 {
		connConfig.ConnectTimeout = config.ConnectTimeout
	}
	if serverTimeouts {
		setDefault(connConfig.RuntimeParams, "statement_timeout", milliseconds(config.StatementTimeout))
		setDefault(connConfig.RuntimeParams, "idle_in_transaction_session_timeout", milliseconds(2*config.TxTimeout))
	}
	poolConfig.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn.TypeMap())
		registerJSONB(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", RedactURL(databaseURL), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, config.ConnectTimeout+StatementTimeoutDefault)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database unreachable at %s: %w", RedactURL(databaseURL), err)
	}
	return pool, nil
}

func setDefault(params map[string]string, name, value string) {
	if _, ok := params[name]; !ok {
		params[name] = value
	}
}

func milliseconds(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10)
}
