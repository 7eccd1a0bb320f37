// Package dbtest gives tests a real PostgreSQL database in two tiers, as
// River does:
//
//   - Tx, the default: a SERIALIZABLE transaction rolled back when the test
//     ends. Code under test opens its transactions as savepoints of it
//     (through db.Savepoint), so tests run in parallel without seeing each
//     other's rows and leave nothing behind. About half a millisecond.
//   - NewDatabase: a fresh database cloned from a migrated template, for
//     tests that need commits or real concurrency (racing requests, River
//     workers, several connections). About 50 milliseconds.
//
// The database named by TEST_DATABASE_URL (default: rocketrides_test on the
// local server) is created if missing and migrated once per test binary.
package dbtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver pgtestdb connects with
	"github.com/peterldowns/pgtestdb"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/migrations"
)

// DatabaseURLDefault is the test database used when TEST_DATABASE_URL is
// unset.
const DatabaseURLDefault = "postgres://127.0.0.1:5432/rocketrides_test?sslmode=disable"

// DatabaseURL returns TEST_DATABASE_URL, or DatabaseURLDefault.
func DatabaseURL() string {
	if url := os.Getenv("TEST_DATABASE_URL"); url != "" {
		return url
	}
	return DatabaseURLDefault
}

var (
	poolOnce sync.Once
	pool     *pgxpool.Pool
	poolErr  error
)

// Pool returns a pool on the shared test database, creating and migrating
// the database on first use. Tests should rarely write through it directly:
// its commits are seen by every other test.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	poolOnce.Do(func() {
		pool, poolErr = openMigrated(context.Background(), DatabaseURL())
	})
	if poolErr != nil {
		tb.Fatalf("test database: %s", poolErr)
	}
	return pool
}

// Tx begins a SERIALIZABLE transaction on the shared test database and rolls
// it back when the test ends. Hand it to code that opens transactions as
// db.Savepoint{Tx: tx}. It is SERIALIZABLE because a savepoint cannot change
// the isolation level, and the stricter level is the one code must survive.
func Tx(ctx context.Context, tb testing.TB) pgx.Tx {
	tb.Helper()
	tx, err := Pool(tb).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		tb.Fatalf("beginning test transaction: %s", err)
	}
	tb.Cleanup(func() {
		err := tx.Rollback(context.WithoutCancel(ctx))
		if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			tb.Errorf("rolling back test transaction: %s", err)
		}
	})
	return tx
}

// NewDatabase returns a pool on a new database of its own, cloned from a
// migrated template and dropped when the test ends (kept if it fails, for a
// look). Use it where a test needs commits or real concurrency.
func NewDatabase(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	conf := pgtestdbConfig(tb)
	instance := pgtestdb.Custom(tb, conf, migrator{})
	ctx := context.Background()
	newPool, err := db.NewPool(ctx, instance.URL(), 0)
	if err != nil {
		tb.Fatalf("opening test database: %s", err)
	}
	tb.Cleanup(newPool.Close)
	return newPool
}

// NewDatabaseURL is NewDatabase for a test that starts another process: it
// returns the new database's URL instead of a pool.
func NewDatabaseURL(tb testing.TB) string {
	tb.Helper()
	return pgtestdb.Custom(tb, pgtestdbConfig(tb), migrator{}).URL()
}

func pgtestdbConfig(tb testing.TB) pgtestdb.Config {
	tb.Helper()
	parsed, err := pgconn.ParseConfig(DatabaseURL())
	if err != nil {
		tb.Fatalf("parsing TEST_DATABASE_URL: %s", err)
	}
	return pgtestdb.Config{
		DriverName:                "pgx",
		Host:                      parsed.Host,
		Port:                      fmt.Sprint(parsed.Port),
		User:                      url.PathEscape(parsed.User),
		Password:                  url.PathEscape(parsed.Password),
		Database:                  "postgres",
		Options:                   "sslmode=disable",
		ForceTerminateConnections: true,
	}
}

// openMigrated creates the database at databaseURL if it does not exist,
// migrates it, and returns a pool on it.
func openMigrated(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	if err := db.CreateDatabase(ctx, databaseURL); err != nil {
		return nil, err
	}
	newPool, err := db.NewPool(ctx, databaseURL, 0)
	if err != nil {
		return nil, err
	}
	if err := migrations.Up(ctx, newPool, slog.New(slog.DiscardHandler)); err != nil {
		newPool.Close()
		return nil, err
	}
	return newPool, nil
}

// migrator prepares pgtestdb's template database with our migrations and
// River's.
type migrator struct{}

// Hash identifies the template by the content of every migration file, so a
// changed migration gets a template of its own.
func (migrator) Hash() (string, error) {
	hash := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || !strings.HasSuffix(path, ".sql") {
			return err
		}
		content, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		hash.Write([]byte(path))
		hash.Write(content)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing migrations: %w", err)
	}
	hash.Write([]byte(riverVersion()))
	return hex.EncodeToString(hash.Sum(nil))[:16], nil
}

// Migrate applies the migrations to the template database.
func (migrator) Migrate(ctx context.Context, _ *sql.DB, conf pgtestdb.Config) error {
	templatePool, err := db.NewPool(ctx, conf.URL(), 0)
	if err != nil {
		return err
	}
	defer templatePool.Close()
	return migrations.Up(ctx, templatePool, slog.New(slog.DiscardHandler))
}

// riverVersion is part of the template's hash: a River upgrade may bring
// migrations of its own.
func riverVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/riverqueue/river" {
			return dep.Version
		}
	}
	return ""
}

// Clean drops what the test suite leaves on the server of databaseURL: the
// test database itself and the databases named after it (NAME_*, which
// tests create for a moment), pgtestdb's templates and the databases of
// failed tests (testdb_tpl_*), and pgtestdb's role (pgtdbuser). It returns
// what it dropped. It refuses a test database whose name lacks "test", in
// case databaseURL names a database of value.
func Clean(ctx context.Context, databaseURL string) ([]string, error) {
	config, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing test database URL: %w", err)
	}
	testDatabase := config.Database
	if !strings.Contains(testDatabase, "test") {
		return nil, fmt.Errorf("refusing to drop database %q: the name of a test database contains \"test\"", testDatabase)
	}
	config.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("database server unreachable at %s: %w", db.RedactURL(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	escaped := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(testDatabase)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database
		WHERE datname = $1 OR datname LIKE $2 OR datname LIKE 'testdb\_tpl\_%' ORDER BY datname`,
		testDatabase, escaped+`\_%`)
	if err != nil {
		return nil, fmt.Errorf("listing test databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing test databases: %w", err)
	}
	var dropped []string
	for _, name := range names {
		identifier := pgx.Identifier{name}.Sanitize()
		// pgtestdb marks its templates as such, and a template cannot be dropped.
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+identifier+" IS_TEMPLATE false"); err != nil {
			return dropped, fmt.Errorf("unmarking template database %s: %w", name, err)
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+identifier+" WITH (FORCE)"); err != nil {
			return dropped, fmt.Errorf("dropping database %s: %w", name, err)
		}
		dropped = append(dropped, "database "+name)
	}
	var roleExists bool
	role := pgtestdb.DefaultRoleUsername
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role).Scan(&roleExists); err != nil {
		return dropped, fmt.Errorf("looking for role %s: %w", role, err)
	}
	if roleExists {
		if _, err := conn.Exec(ctx, "DROP ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			return dropped, fmt.Errorf("dropping role %s: %w", role, err)
		}
		dropped = append(dropped, "role "+role)
	}
	return dropped, nil
}
