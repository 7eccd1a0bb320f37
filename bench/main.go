// Command bench measures the API against the database's own limit, in one
// run, on a database of its own.
//
// For each scenario (new keys at both isolation levels, replays of finished
// keys, failures and their recovery, and new keys with a slow Stripe) and
// each concurrency, it drives the API, in process behind a real HTTP server
// on a loopback port, with a keep-alive load generator, then runs the limit:
// the same statements of package db, in the same transactions, with the same
// Stripe call between them, on the same pool, with no HTTP and no handler.
// It prints a table and the targets of the issue, and writes results.json
// and results.png.
//
// Run it from the repository's root:
//
//	go run ./bench
//
// A cell alternates between the API and the limit in -rounds rounds (2 by
// default), each a warm-up then a measured run, for -duration in all per
// side (3 s by default); the whole run takes about three minutes. It sends
// traffic to loopback addresses only, and stops by itself.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/migrations"
)

// Defaults of the flags.
const (
	concurrenciesDefault      = "1,8,32,64"
	databaseURLDefault        = "postgres://127.0.0.1:5432/rocketrides_bench?sslmode=disable"
	durationDefault           = 3 * time.Second
	latencyConcurrencyDefault = 64
	maxRequestsDefault        = 100_000
	outDirDefault             = "bench"
	poolMaxConnsDefault       = 64
	replayKeysPerUserDefault  = 25
	roundsDefault             = 2
	stripeLatencyDefault      = 50 * time.Millisecond
	timeoutDefault            = 10 * time.Minute
	warmupDefault             = 500 * time.Millisecond
)

// config is the run's settings, from flags.
type config struct {
	concurrencies      []int
	databaseURL        string
	duration           time.Duration
	latencyConcurrency int
	maxIterations      int
	outDir             string
	poolMaxConns       int
	replayKeysPerUser  int
	rounds             int
	scenarios          []string
	stripeLatency      time.Duration
	timeout            time.Duration
	warmup             time.Duration
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		slog.Error("bench: failed", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	concurrencies := flags.String("concurrency", concurrenciesDefault, "concurrencies of every scenario but stripe_latency, comma-separated")
	flags.StringVar(&cfg.databaseURL, "database-url", cmp.Or(os.Getenv("BENCH_DATABASE_URL"), databaseURLDefault), "database to create if missing and use (env BENCH_DATABASE_URL); its tables are emptied")
	flags.DurationVar(&cfg.duration, "duration", durationDefault, "measured time of each side of a cell, split across its rounds")
	flags.IntVar(&cfg.latencyConcurrency, "latency-concurrency", latencyConcurrencyDefault, "concurrency of the stripe_latency scenario")
	flags.IntVar(&cfg.maxIterations, "max-requests", maxRequestsDefault, "most iterations of a measured run (a recovery iteration is two requests)")
	flags.StringVar(&cfg.outDir, "out", outDirDefault, "directory of results.json, results.png and CPU profiles")
	flags.IntVar(&cfg.poolMaxConns, "pool-max-conns", poolMaxConnsDefault, "size of the pool that the API and the limit share")
	flags.IntVar(&cfg.replayKeysPerUser, "replay-keys-per-user", replayKeysPerUserDefault, "finished keys per user that the replays scenario asks for again")
	flags.IntVar(&cfg.rounds, "rounds", roundsDefault, "rounds of a cell: each runs the API, then the limit, after a warm-up each")
	scenarios := flags.String("scenarios", strings.Join(scenarioNames(), ","), "scenarios to run, comma-separated")
	flags.DurationVar(&cfg.stripeLatency, "stripe-latency", stripeLatencyDefault, "Stripe fake's latency per charge in the stripe_latency scenario")
	flags.DurationVar(&cfg.timeout, "timeout", timeoutDefault, "bound on the whole run")
	flags.DurationVar(&cfg.warmup, "warmup", warmupDefault, "unmeasured run before each round of each side")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if cfg.rounds < 1 {
		return nil, fmt.Errorf("invalid -rounds %d", cfg.rounds)
	}
	for _, name := range strings.Split(*scenarios, ",") {
		if !slices.Contains(scenarioNames(), name) {
			return nil, fmt.Errorf("unknown scenario %q in -scenarios (want some of %s)", name, strings.Join(scenarioNames(), ","))
		}
		cfg.scenarios = append(cfg.scenarios, name)
	}
	for _, field := range strings.Split(*concurrencies, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("invalid -concurrency %q", *concurrencies)
		}
		cfg.concurrencies = append(cfg.concurrencies, n)
	}
	return cfg, nil
}

// run sets up the database and the Stripe fakes, runs every scenario, and
// reports.
func run(ctx context.Context, cfg *config) error {
	counter := newDBCounter()
	pool, err := openDatabase(ctx, cfg, counter)
	if err != nil {
		return err
	}
	defer pool.Close()

	numUsers := max(slices.Max(cfg.concurrencies), cfg.latencyConcurrency)
	fast, err := startStripe(ctx, pool, counter, "fast", 0, numUsers)
	if err != nil {
		return err
	}
	slow, err := startStripe(ctx, pool, counter, "slow", cfg.stripeLatency, numUsers)
	if err != nil {
		return err
	}
	b := &bench{config: cfg, counter: counter, fast: fast, pool: pool, slow: slow}

	var rows []*Row
	for _, sc := range b.scenarios() {
		if !slices.Contains(cfg.scenarios, sc.name) {
			continue
		}
		slog.InfoContext(ctx, "bench: scenario", slog.String("scenario", sc.name), slog.Any("concurrencies", sc.concurrencies))
		scenarioRows, err := b.runScenario(ctx, sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		rows = append(rows, scenarioRows...)
	}
	return report(rows, cfg.outDir)
}

// openDatabase creates the bench's database if missing, migrates it,
// empties it, and returns a pool on it that counter traces.
func openDatabase(ctx context.Context, cfg *config, counter *dbCounter) (*pgxpool.Pool, error) {
	if err := db.CreateDatabase(ctx, cfg.databaseURL); err != nil {
		return nil, err
	}
	poolConfig, err := pgxpool.ParseConfig(cfg.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL %s: %w", db.RedactURL(cfg.databaseURL), err)
	}
	poolConfig.MaxConns = int32(cfg.poolMaxConns)
	poolConfig.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", db.RedactURL(cfg.databaseURL), err)
	}
	if err := migrations.Up(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, "TRUNCATE idempotency_keys, rides, ride_cancellations, audit_records, staged_jobs, api_keys, users"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("emptying database: %w", err)
	}
	return pool, nil
}

// report judges the targets, keeps the profiles of the cells that failed
// one, and writes the table, the targets, results.json and results.png.
func report(rows []*Row, outDir string) error {
	targets := evaluate(rows)
	profileErr := keepProfiles(rows, failedRows(targets))
	if err := writeTable(os.Stdout, rows); err != nil {
		return err
	}
	fmt.Println()
	if err := writeTargets(os.Stdout, targets); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(outDir, "results.json"), rows); err != nil {
		return err
	}
	if err := writeChart(filepath.Join(outDir, "results.png"), rows); err != nil {
		return err
	}
	return profileErr
}
