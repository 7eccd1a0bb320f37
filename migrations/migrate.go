package migrations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// migrateLockID is the advisory lock that makes concurrent migrations of one
// database (several test packages, several deploys) take turns.
const migrateLockID = 7_277_367_001

// Up applies every pending migration: ours, then River's, which keeps its
// job queue in the same database.
func Up(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	return withLock(ctx, pool, func() error {
		provider, err := newProvider(pool)
		if err != nil {
			return err
		}
		results, err := provider.Up(ctx)
		if err != nil {
			return fmt.Errorf("applying migrations: %w", err)
		}
		for _, result := range results {
			logger.InfoContext(ctx, "migration applied", slog.String("source", result.Source.Path), slog.Duration("duration", result.Duration))
		}
		riverMigrator, err := newRiverMigrator(pool)
		if err != nil {
			return err
		}
		riverResult, err := riverMigrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			return fmt.Errorf("applying River's migrations: %w", err)
		}
		for _, version := range riverResult.Versions {
			logger.InfoContext(ctx, "River migration applied", slog.Int("version", version.Version), slog.String("name", version.Name))
		}
		return nil
	})
}

// Down rolls back the latest of our migrations, or with all set, every one
// of ours and then River's, leaving an empty database.
func Down(ctx context.Context, pool *pgxpool.Pool, all bool, logger *slog.Logger) error {
	return withLock(ctx, pool, func() error {
		provider, err := newProvider(pool)
		if err != nil {
			return err
		}
		if !all {
			result, err := provider.Down(ctx)
			if err != nil {
				return fmt.Errorf("rolling back migration: %w", err)
			}
			logger.InfoContext(ctx, "migration rolled back", slog.String("source", result.Source.Path))
			return nil
		}
		results, err := provider.DownTo(ctx, 0)
		if err != nil {
			return fmt.Errorf("rolling back migrations: %w", err)
		}
		for _, result := range results {
			logger.InfoContext(ctx, "migration rolled back", slog.String("source", result.Source.Path))
		}
		riverMigrator, err := newRiverMigrator(pool)
		if err != nil {
			return err
		}
		riverResult, err := riverMigrator.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1})
		if err != nil {
			return fmt.Errorf("rolling back River's migrations: %w", err)
		}
		for _, version := range riverResult.Versions {
			logger.InfoContext(ctx, "River migration rolled back", slog.Int("version", version.Version))
		}
		return nil
	})
}

// ErrNotApplied means that the database lacks migrations that this binary
// has: it was never migrated, or it was before an upgrade.
var ErrNotApplied = errors.New("the database is not migrated")

// CheckApplied returns an error wrapping ErrNotApplied, with how many
// migrations are applied and what to run, unless every migration, ours and
// River's, is applied. Processes that need the schema call it at start-up, so
// that they fail with this rather than at their first query.
func CheckApplied(ctx context.Context, pool *pgxpool.Pool) error {
	provider, err := newProvider(pool)
	if err != nil {
		return err
	}
	statuses, err := provider.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading migration status: %w", err)
	}
	applied := 0
	for _, status := range statuses {
		if status.State == goose.StateApplied {
			applied++
		}
	}
	riverMigrator, err := newRiverMigrator(pool)
	if err != nil {
		return err
	}
	existing, err := riverMigrator.ExistingVersions(ctx)
	if err != nil {
		return fmt.Errorf("reading River's migration status: %w", err)
	}
	riverApplied, riverAll := len(existing), len(riverMigrator.AllVersions())
	if applied == len(statuses) && riverApplied >= riverAll {
		return nil
	}
	return fmt.Errorf("%w (ours: %d of %d applied, River's: %d of %d): run `rocketrides migrate up`",
		ErrNotApplied, applied, len(statuses), riverApplied, riverAll)
}

// Status writes each of our migrations and whether it is applied to out,
// then River's schema version.
func Status(ctx context.Context, pool *pgxpool.Pool, out io.Writer) error {
	provider, err := newProvider(pool)
	if err != nil {
		return err
	}
	statuses, err := provider.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading migration status: %w", err)
	}
	for _, status := range statuses {
		applied := "pending"
		if status.State == goose.StateApplied {
			applied = "applied " + status.AppliedAt.Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(out, "%-30s %s\n", status.Source.Path, applied)
	}
	riverMigrator, err := newRiverMigrator(pool)
	if err != nil {
		return err
	}
	existing, err := riverMigrator.ExistingVersions(ctx)
	if err != nil {
		return fmt.Errorf("reading River's migration status: %w", err)
	}
	fmt.Fprintf(out, "%-30s %d of %d applied\n", "river", len(existing), len(riverMigrator.AllVersions()))
	return nil
}

func newProvider(pool *pgxpool.Pool) (*goose.Provider, error) {
	provider, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), FS)
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	return provider, nil
}

func newRiverMigrator(pool *pgxpool.Pool) (*rivermigrate.Migrator[pgx.Tx], error) {
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return nil, fmt.Errorf("reading River's migrations: %w", err)
	}
	return migrator, nil
}

// withLock runs fn while holding a session advisory lock on a connection of
// its own.
func withLock(ctx context.Context, pool *pgxpool.Pool, fn func() error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		return fmt.Errorf("taking migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockID) //nolint:errcheck // the lock goes with the session anyway
	return fn()
}
