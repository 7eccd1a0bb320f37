package main

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
)

// dbFlags are the database's deadlines, shared by every subcommand.
type dbFlags struct {
	DBAcquireTimeout   time.Duration `env:"DB_ACQUIRE_TIMEOUT" default:"2s" help:"Longest wait of a request for a free database connection."`
	DBConnectTimeout   time.Duration `env:"DB_CONNECT_TIMEOUT" default:"3s" help:"Longest wait to open one database connection."`
	DBStatementTimeout time.Duration `env:"DB_STATEMENT_TIMEOUT" default:"2s" help:"Longest run of one statement (the server's statement_timeout, and the client's deadline)."`
	DBTxTimeout        time.Duration `env:"DB_TX_TIMEOUT" default:"5s" help:"Longest run of one phase's transaction, from the wait for its connection to its commit."`
}

// poolConfig is the configuration of a process's pool.
func (f *dbFlags) poolConfig(maxConns int32) *db.PoolConfig {
	return &db.PoolConfig{
		ConnectTimeout:   f.DBConnectTimeout,
		MaxConns:         maxConns,
		StatementTimeout: f.DBStatementTimeout,
		TxTimeout:        f.DBTxTimeout,
	}
}

// bounded is pool with the request path's bounds on its waits.
func (f *dbFlags) bounded(pool *pgxpool.Pool) (*db.Bounded, error) {
	return db.NewBounded(pool, &db.BoundedConfig{AcquireTimeout: f.DBAcquireTimeout, StatementTimeout: f.DBStatementTimeout})
}
