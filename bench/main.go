// Command bench measures the API against the best raw form of its work,
// and against a peer, in one run, on a database of its own.
//
// It builds rocketrides and runs `rocketrides api` as a process of its own
// (demo mode, on the bench's Stripe fake), so that the API's CPU and memory
// are its own. For each scenario (new keys at both isolation levels,
// replays of finished keys, cancels of charged rides) and each concurrency
// it drives the API with a keep-alive load generator, then the limit: the
// same rows written with each transaction in one round trip (SQL written
// here by hand, sharing nothing with package db or the engine), the same
// Stripe fake call between the transactions, from the same number of
// goroutines on a pool of the same size, with no HTTP and no handler; for
// replays, a bare net/http handler that runs the same read and writes the
// stored bytes. Built with the peer (-tags peer), it runs the peer as a
// third process, for new keys and replays.
//
// Round trips and transactions per request are counted, for every side, by
// a TCP proxy in front of PostgreSQL in a short calibration pass before
// each cell; the timed runs go straight to PostgreSQL. The overload
// scenario runs the API with its default admission settings at 32 and then
// 1,024 clients and follows its memory until a minute after the load.
//
// It prints a table and the targets of issues 11 and 13, and writes
// results.json and results.png. Run it from the repository's root:
//
//	go tool task bench
//	go tool task bench -- -scenarios overload
//
// A cell alternates between the sides in -rounds rounds (2 by default),
// each a warm-up then a timed run, for -duration in all per side (3 s by
// default); the whole run takes about five minutes. It sends traffic to
// loopback addresses only, and stops by itself.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/bench/dbospeer"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/migrations"
	"github.com/rocketrides/rocketrides/roundtrips"
)

// Defaults of the flags.
const (
	calibrationDefault         = 500 * time.Millisecond
	calibrationWarmupDefault   = 200 * time.Millisecond
	cancelConcurrencyDefault   = "8,32"
	cancelRidesDefault         = 20_000
	concurrenciesDefault       = "1,8,32,64"
	databaseURLDefault         = "postgres://127.0.0.1:5432/rocketrides_bench?sslmode=disable"
	durationDefault            = 3 * time.Second
	maxRequestsDefault         = 100_000
	outDirDefault              = "."
	overloadClientsDefault     = 1024
	overloadDurationDefault    = 3 * time.Second
	overloadSettleDefault      = 60 * time.Second
	overloadRoundsDefault      = 4
	overloadBaseClientsDefault = 32
	poolMaxConnsDefault        = 16
	replayKeysPerUserDefault   = 25
	roundsDefault              = 2
	timeoutDefault             = 15 * time.Minute
	warmupDefault              = 500 * time.Millisecond
)

// servePeerMode is the first argument with which the bench runs as the
// peer's server (see startPeer), not as the bench.
const servePeerMode = "serve-peer"

// config is the run's settings, from flags.
type config struct {
	calibration         time.Duration
	calibrationWarmup   time.Duration
	cancelConcurrencies []int
	cancelRides         int
	concurrencies       []int
	databaseURL         string
	duration            time.Duration
	maxIterations       int
	noPeer              bool
	outDir              string
	overloadBaseClients int
	overloadClients     int
	overloadDuration    time.Duration
	overloadSettle      time.Duration
	overloadRounds      int
	poolMaxConns        int
	replayKeysPerUser   int
	rounds              int
	scenarios           []string
	timeout             time.Duration
	warmup              time.Duration
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 {
		for mode, serve := range map[string]func(context.Context, []string) error{servePeerMode: servePeer, serveBareMode: serveBare} {
			if os.Args[1] != mode {
				continue
			}
			if err := serve(ctx, os.Args[2:]); err != nil {
				slog.Error("bench: "+mode+" failed", slog.String("error", err.Error()))
				os.Exit(1)
			}
			return
		}
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
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
	flags.DurationVar(&cfg.calibration, "calibration", calibrationDefault, "counted run of each side's calibration through the proxy, per cell")
	flags.DurationVar(&cfg.calibrationWarmup, "calibration-warmup", calibrationWarmupDefault, "unmeasured run before each calibration")
	cancelConcurrencies := flags.String("cancel-concurrency", cancelConcurrencyDefault, "concurrencies of the cancels scenario, comma-separated")
	flags.IntVar(&cfg.cancelRides, "cancel-rides", cancelRidesDefault, "charged rides made for the cancels scenario to cancel")
	concurrencies := flags.String("concurrency", concurrenciesDefault, "concurrencies of the new keys and replays scenarios, comma-separated")
	flags.StringVar(&cfg.databaseURL, "database-url", cmp.Or(os.Getenv("BENCH_DATABASE_URL"), databaseURLDefault), "database to create if missing and use (env BENCH_DATABASE_URL); its tables are emptied")
	flags.DurationVar(&cfg.duration, "duration", durationDefault, "timed run of each side of a cell, split across its rounds")
	flags.IntVar(&cfg.maxIterations, "max-requests", maxRequestsDefault, "most iterations of a timed run")
	flags.BoolVar(&cfg.noPeer, "no-peer", false, "leave the peer (DBOS) out")
	flags.StringVar(&cfg.outDir, "out", outDirDefault, "directory of results.json and results.png")
	flags.IntVar(&cfg.overloadBaseClients, "overload-base-clients", overloadBaseClientsDefault, "clients of the overload scenario's reference run")
	flags.IntVar(&cfg.overloadClients, "overload-clients", overloadClientsDefault, "clients of the overload scenario's overload run")
	flags.DurationVar(&cfg.overloadDuration, "overload-duration", overloadDurationDefault, "timed run of each of the overload scenario's two loads")
	flags.DurationVar(&cfg.overloadSettle, "overload-settle", overloadSettleDefault, "wait after a load of the overload scenario before the API's memory is read")
	flags.IntVar(&cfg.overloadRounds, "overload-rounds", overloadRoundsDefault, "rounds of the overload scenario: each runs its few clients, then its many")
	flags.IntVar(&cfg.poolMaxConns, "pool-max-conns", poolMaxConnsDefault, "size of the API's pool (DB_MAX_CONNS), the limit's and the peer's; 16 is the API's default")
	flags.IntVar(&cfg.replayKeysPerUser, "replay-keys-per-user", replayKeysPerUserDefault, "finished keys per user that the replays scenario asks for again")
	flags.IntVar(&cfg.rounds, "rounds", roundsDefault, "rounds of a cell: each runs every side after a warm-up")
	scenarios := flags.String("scenarios", strings.Join(scenarioNames(), ","), "scenarios to run, comma-separated")
	flags.DurationVar(&cfg.timeout, "timeout", timeoutDefault, "bound on the whole run")
	flags.DurationVar(&cfg.warmup, "warmup", warmupDefault, "unmeasured run before each round of each side")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if cfg.rounds < 1 {
		return nil, fmt.Errorf("invalid -rounds %d", cfg.rounds)
	}
	if cfg.overloadRounds < 1 {
		return nil, fmt.Errorf("invalid -overload-rounds %d", cfg.overloadRounds)
	}
	for _, name := range strings.Split(*scenarios, ",") {
		if !slices.Contains(scenarioNames(), name) {
			return nil, fmt.Errorf("unknown scenario %q in -scenarios (want some of %s)", name, strings.Join(scenarioNames(), ","))
		}
		cfg.scenarios = append(cfg.scenarios, name)
	}
	var err error
	if cfg.concurrencies, err = parseConcurrencies("concurrency", *concurrencies); err != nil {
		return nil, err
	}
	if cfg.cancelConcurrencies, err = parseConcurrencies("cancel-concurrency", *cancelConcurrencies); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseConcurrencies parses a comma-separated list of positive integers.
func parseConcurrencies(flagName, list string) ([]int, error) {
	var concurrencies []int
	for _, field := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("invalid -%s %q", flagName, list)
		}
		concurrencies = append(concurrencies, n)
	}
	return concurrencies, nil
}

// run sets up the database, the proxies, the Stripe fake and the binary,
// runs every scenario, and reports.
func run(ctx context.Context, cfg *config) error {
	pool, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	dir, err := os.MkdirTemp("", "rocketrides-bench-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	slog.InfoContext(ctx, "bench: building rocketrides")
	binary, err := buildRocketrides(ctx, dir)
	if err != nil {
		return err
	}
	target, err := databaseHostPort(cfg.databaseURL)
	if err != nil {
		return err
	}
	// One proxy per side, so that what one side's process does in the
	// background (the peer's polling of its queues) is not counted as
	// another's.
	proxies := make(map[string]*roundtrips.Proxy)
	for _, name := range []string{sideAPI, sideLimit, sidePeer, sideBare} {
		proxy, err := roundtrips.NewProxy(target)
		if err != nil {
			return err
		}
		defer proxy.Close()
		proxies[name] = proxy
	}
	numUsers := max(maxOf(cfg.concurrencies), maxOf(cfg.cancelConcurrencies))
	stripe, err := startStripe(ctx, pool, numUsers)
	if err != nil {
		return err
	}
	b := &bench{config: cfg, binary: binary, dir: dir, pool: pool, proxies: proxies, rides: &rideSupply{}, stripe: stripe}

	results := &Results{}
	for _, sc := range b.scenarios() {
		if !slices.Contains(cfg.scenarios, sc.name) {
			continue
		}
		slog.InfoContext(ctx, "bench: scenario", slog.String("scenario", sc.name), slog.Any("concurrencies", sc.concurrencies))
		rows, err := b.runScenario(ctx, sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		results.Cells = append(results.Cells, rows...)
	}
	if slices.Contains(cfg.scenarios, scenarioOverload) {
		slog.InfoContext(ctx, "bench: scenario", slog.String("scenario", scenarioOverload),
			slog.Int("base_clients", cfg.overloadBaseClients), slog.Int("clients", cfg.overloadClients))
		results.Overload, err = b.runOverload(ctx)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", scenarioOverload, err)
		}
	}
	return report(results, cfg.outDir)
}

// databaseHostPort is the host:port of databaseURL, for the proxy.
func databaseHostPort(databaseURL string) (string, error) {
	config, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return "", fmt.Errorf("parsing database URL %s: %w", db.RedactURL(databaseURL), err)
	}
	return net.JoinHostPort(config.ConnConfig.Host, strconv.Itoa(int(config.ConnConfig.Port))), nil
}

// openDatabase creates the bench's database if missing, migrates it,
// empties it, and returns a pool on it.
func openDatabase(ctx context.Context, cfg *config) (*pgxpool.Pool, error) {
	if err := db.CreateDatabase(ctx, cfg.databaseURL); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cfg.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", db.RedactURL(cfg.databaseURL), err)
	}
	if err := migrations.Up(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		pool.Close()
		return nil, err
	}
	// The peer's tables refer to users: drop them, the peer makes them anew.
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{dbospeer.Schema}.Sanitize()+", "+
		pgx.Identifier{dbospeer.SystemSchema}.Sanitize()+" CASCADE"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("dropping the peer's tables: %w", err)
	}
	if _, err := pool.Exec(ctx, "TRUNCATE idempotency_keys, rides, ride_cancellations, audit_records, staged_jobs, api_keys, users"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("emptying database: %w", err)
	}
	return pool, nil
}

// report judges the targets and writes the table, the targets,
// results.json and results.png.
func report(results *Results, outDir string) error {
	results.Targets = evaluate(results)
	if err := writeTable(os.Stdout, results); err != nil {
		return err
	}
	fmt.Println()
	if err := writeTargets(os.Stdout, results.Targets); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(outDir, "results.json"), results); err != nil {
		return err
	}
	if len(results.Cells) == 0 {
		return nil
	}
	return writeChart(filepath.Join(outDir, "results.png"), results.Cells)
}
