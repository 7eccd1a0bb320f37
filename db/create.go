package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoDatabaseName means a database URL names no database, so there is
// nothing to create or migrate: usually DATABASE_URL or --database-url is
// empty.
var ErrNoDatabaseName = errors.New("no database name")

// CreateDatabase creates the database that databaseURL names, if it does
// not exist, by connecting to the server's postgres database.
func CreateDatabase(ctx context.Context, databaseURL string) error {
	config, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parsing database URL: %w", err)
	}
	name := config.Database
	if name == "" {
		return fmt.Errorf("%w: the database URL names no database (for example postgres://127.0.0.1:5432/rocketrides)", ErrNoDatabaseName)
	}
	config.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return fmt.Errorf("database server unreachable at %s: %w", RedactURL(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("looking for database %s: %w", name, err)
	}
	if exists { // a role without CREATEDB may use a database it cannot create
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	// 42P04: duplicate_database; 23505: two creators raced on the catalog.
	return errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")
}
