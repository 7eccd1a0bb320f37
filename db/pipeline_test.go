package db_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
)

func TestWithPipeline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const table = "CREATE TEMPORARY TABLE pipelined (id int PRIMARY KEY)"

	// Values scanned by a queued query are there after Flush, and the
	// transaction goes on.
	t.Run("FlushFillsScans", func(t *testing.T) {
		t.Parallel()
		exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
		_, err := exec.Exec(ctx, table)
		require.NoError(t, err)
		err = db.WithPipeline(ctx, exec, db.TxOptions{}, func(ctx context.Context, tx *db.Pipeline) error {
			var id int
			_, err := tx.Exec(ctx, "INSERT INTO pipelined VALUES (1)")
			require.NoError(t, err)
			require.NoError(t, tx.QueryRow(ctx, "SELECT id + 1 FROM pipelined").Scan(&id))
			require.Zero(t, id, "not sent yet")
			require.NoError(t, tx.Flush(ctx))
			require.Equal(t, 2, id)
			_, err = tx.Exec(ctx, "INSERT INTO pipelined VALUES ($1)", id)
			return err
		})
		require.NoError(t, err)
		var n int
		require.NoError(t, exec.QueryRow(ctx, "SELECT count(*) FROM pipelined").Scan(&n))
		require.Equal(t, 2, n)
	})

	// A failing statement aborts the ones queued after it: nothing commits.
	t.Run("ErrorSkipsTheRest", func(t *testing.T) {
		t.Parallel()
		exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
		_, err := exec.Exec(ctx, table)
		require.NoError(t, err)
		err = db.WithPipeline(ctx, exec, db.TxOptions{}, func(ctx context.Context, tx *db.Pipeline) error {
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (1)")
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (1)")
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (2)")
			return nil
		})
		require.True(t, db.IsUniqueViolation(err, ""), "got %v", err)
		var n int
		require.NoError(t, exec.QueryRow(ctx, "SELECT count(*) FROM pipelined").Scan(&n))
		require.Zero(t, n)
	})

	// On a pool, the transaction runs at the level asked for, and commits.
	t.Run("PoolIsolation", func(t *testing.T) {
		t.Parallel()
		pool := dbtest.Pool(t)
		var level string
		err := db.WithPipeline(ctx, pool, db.TxOptions{Isolation: pgx.Serializable}, func(ctx context.Context, tx *db.Pipeline) error {
			return tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation')").Scan(&level)
		})
		require.NoError(t, err)
		require.Equal(t, "serializable", level)
	})

	// On a pool at read committed, a transaction sent in one go is one
	// implicit transaction: its statements share one transaction, and a
	// failing statement rolls back the ones before it, even though no
	// BEGIN or COMMIT was sent.
	t.Run("PoolImplicit", func(t *testing.T) {
		t.Parallel()
		pool := dbtest.NewDatabase(t)
		_, err := pool.Exec(ctx, "CREATE TABLE pipelined (id int PRIMARY KEY)")
		require.NoError(t, err)
		var first, second int64
		err = db.WithPipeline(ctx, pool, db.TxOptions{Isolation: pgx.ReadCommitted}, func(ctx context.Context, tx *db.Pipeline) error {
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (1)")
			_ = tx.QueryRow(ctx, "SELECT txid_current()").Scan(&first)
			_ = tx.QueryRow(ctx, "SELECT txid_current()").Scan(&second)
			return nil
		})
		require.NoError(t, err)
		require.NotZero(t, first)
		require.Equal(t, first, second, "one transaction")

		err = db.WithPipeline(ctx, pool, db.TxOptions{}, func(ctx context.Context, tx *db.Pipeline) error {
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (2)")
			_, _ = tx.Exec(ctx, "INSERT INTO pipelined VALUES (1)")
			return nil
		})
		require.True(t, db.IsUniqueViolation(err, ""), "got %v", err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pipelined").Scan(&n))
		require.Equal(t, 1, n, "the failed transaction's first insert rolled back")
	})

	t.Run("QueryRefused", func(t *testing.T) {
		t.Parallel()
		err := db.WithPipeline(ctx, dbtest.Pool(t), db.TxOptions{}, func(ctx context.Context, tx *db.Pipeline) error {
			_, err := tx.Query(ctx, "SELECT 1")
			return err
		})
		require.ErrorIs(t, err, db.ErrNotQueueable)
	})
}
