package dbtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
)

// TestTxIsolation shows that a row written in one test's transaction is
// invisible to another test running at the same time, and gone afterwards.
func TestTxIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	email := "isolation-" + testfactory.KeyValue() + "@example.com"

	written := make(chan struct{})
	checked := make(chan struct{})

	t.Run("Writer", func(t *testing.T) {
		t.Parallel()
		tx := dbtest.Tx(ctx, t)
		testfactory.User(ctx, t, tx, &testfactory.UserOpts{Email: &email})
		_, err := db.New().UserGetByEmail(ctx, tx, email)
		require.NoError(t, err, "the writer sees its own row")
		close(written)
		<-checked
	})
	t.Run("Reader", func(t *testing.T) {
		t.Parallel()
		<-written
		tx := dbtest.Tx(ctx, t)
		_, err := db.New().UserGetByEmail(ctx, tx, email)
		require.ErrorIs(t, err, pgx.ErrNoRows, "another test must not see the writer's row")
		close(checked)
	})
	t.Cleanup(func() {
		_, err := db.New().UserGetByEmail(ctx, dbtest.Pool(t), email)
		require.ErrorIs(t, err, pgx.ErrNoRows, "the row must be rolled back")
	})
}

// TestSavepointSerializable shows that code opening its own transaction runs
// as a savepoint of the test's transaction, at SERIALIZABLE, and that a
// failed savepoint leaves the test's transaction usable.
func TestSavepointSerializable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := dbtest.Tx(ctx, t)
	exec := db.Savepoint{Tx: tx}

	level, err := db.WithTxV(ctx, exec, db.TxOptions{Isolation: pgx.Serializable}, func(ctx context.Context, tx pgx.Tx) (string, error) {
		var level string
		err := tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level)
		return level, err
	})
	require.NoError(t, err)
	require.Equal(t, "serializable", level)

	err = db.WithTx(ctx, exec, db.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		testfactory.User(ctx, t, tx, &testfactory.UserOpts{Email: testfactory.Ptr("savepoint@example.com")})
		_, err := tx.Exec(ctx, "SELECT 1/0")
		return err
	})
	require.Error(t, err)
	_, err = db.New().UserGetByEmail(ctx, tx, "savepoint@example.com")
	require.ErrorIs(t, err, pgx.ErrNoRows, "the failed savepoint's writes are rolled back")
}

// TestNewDatabase shows that a database of its own takes commits, seen from
// other connections.
func TestNewDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	user := testfactory.User(ctx, t, pool, nil)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	got, err := db.New().UserGetByID(ctx, conn, user.ID)
	require.NoError(t, err)
	require.Equal(t, user.Email, got.Email)
}

// TestWithTxRetries shows that a serialization failure is retried, and that
// the retries are bounded.
func TestWithTxRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := dbtest.Tx(ctx, t)
	exec := db.Savepoint{Tx: tx}

	attempts := 0
	err := db.WithTx(ctx, exec, db.TxOptions{MaxAttempts: 3}, func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		if attempts < 3 {
			_, err := tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$")
			return err
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, attempts)

	attempts = 0
	err = db.WithTx(ctx, exec, db.TxOptions{MaxAttempts: 2}, func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		_, err := tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$")
		return err
	})
	require.True(t, db.IsDeadlock(err))
	require.Equal(t, 2, attempts)
}

// TestErrorClassifiers checks the classifiers on errors PostgreSQL really
// returns.
func TestErrorClassifiers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := dbtest.Tx(ctx, t)
	exec := db.Savepoint{Tx: tx}
	user := testfactory.User(ctx, t, tx, nil)

	err := db.WithTx(ctx, exec, db.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO users (email, stripe_customer_id) VALUES ($1, 'cus_other')", user.Email)
		return err
	})
	require.True(t, db.IsUniqueViolation(err, "users_email_key"))
	require.True(t, db.IsUniqueViolation(err, ""))
	require.False(t, db.IsUniqueViolation(err, "users_stripe_customer_id_key"))
	require.False(t, db.IsRetryable(err))

	err = db.WithTx(ctx, exec, db.TxOptions{MaxAttempts: 1}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$")
		return err
	})
	require.True(t, db.IsSerializationFailure(err))
	require.True(t, db.IsRetryable(err))

	_, err = db.New().UserGetByEmail(ctx, tx, "nobody-"+testfactory.KeyValue()+"@example.com")
	require.True(t, db.IsNotFound(err))
}
