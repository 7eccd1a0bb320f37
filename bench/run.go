package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// bench is one run: the database, the two Stripe fakes, and the settings
// that every cell shares.
type bench struct {
	config  *config
	counter *dbCounter
	// fast is the Stripe fake without latency; slow has config.stripeLatency.
	fast *stripeStack
	pool *pgxpool.Pool
	slow *stripeStack
}

// measurement is what one side (the API or the limit) measured in a cell,
// over all its rounds.
type measurement struct {
	// apiNewConns is how many connections the API accepted during the
	// measured runs (zero when the client keeps its connections alive).
	apiNewConns int64

	cpu      cpuUsage
	db       dbCounts
	profiles []string
	stats    *Stats

	// stripeCharges is how many charge requests the Stripe fake got, and
	// stripeNewConns how many connections it accepted meanwhile.
	stripeCharges  int
	stripeNewConns int64
}

// add adds the measurement of another round.
func (m *measurement) add(round *measurement) {
	m.apiNewConns += round.apiNewConns
	m.cpu.add(round.cpu)
	m.db.add(round.db)
	m.profiles = append(m.profiles, round.profiles...)
	if m.stats == nil {
		m.stats = &Stats{StatusCounts: make(map[string]int)}
	}
	m.stats.add(round.stats)
	m.stripeCharges += round.stripeCharges
	m.stripeNewConns += round.stripeNewConns
}

// runScenario runs sc at each of its concurrencies. A cell alternates
// between the API and the limit, config.rounds times each, so that noise on
// the machine (other work shares it) hits both alike.
func (b *bench) runScenario(ctx context.Context, sc *scenario) ([]*Row, error) {
	server, err := startAPI(b.pool, sc.stripe.client, sc.isolation)
	if err != nil {
		return nil, err
	}
	defer server.close()
	lim, err := newLimit(b.pool, sc.stripe.client, sc.isolation)
	if err != nil {
		return nil, err
	}
	if err := b.setup(ctx, sc, server); err != nil {
		return nil, err
	}

	var rows []*Row
	for _, concurrency := range sc.concurrencies {
		apiSide, limitSide, err := b.runCell(ctx, sc, concurrency, server, lim)
		if err != nil {
			return nil, err
		}
		row := newRow(sc, concurrency, b.pool.Config().MaxConns, apiSide, limitSide)
		slog.InfoContext(ctx, "bench: cell done", slog.String("scenario", sc.name), slog.Int("concurrency", concurrency),
			slog.Float64("api_rps", round(row.APIRPS)), slog.Float64("limit_rps", round(row.LimitRPS)), slog.Float64("ratio", row.Ratio),
			slog.Int("errors", row.Errors+row.Limit.Errors))
		logFirstError(ctx, sc.name, concurrency, "api", apiSide.stats)
		logFirstError(ctx, sc.name, concurrency, "limit", limitSide.stats)
		rows = append(rows, row)
	}
	return rows, nil
}

// runCell measures sc at concurrency on the API and on the limit, round
// after round.
func (b *bench) runCell(ctx context.Context, sc *scenario, concurrency int, server *apiServer, lim *limit) (apiSide, limitSide *measurement, err error) {
	client, err := newAPIClient(server.url, concurrency)
	if err != nil {
		return nil, nil, err
	}
	defer client.CloseIdleConnections()
	apiSide, limitSide = &measurement{}, &measurement{}
	for round := range b.config.rounds {
		m, err := b.measure(ctx, sc, concurrency, profileName(sc, concurrency, "api", round), sc.apiOp(client), server)
		if err != nil {
			return nil, nil, err
		}
		apiSide.add(m)
		m, err = b.measure(ctx, sc, concurrency, profileName(sc, concurrency, "limit", round), sc.limitOp(lim), nil)
		if err != nil {
			return nil, nil, err
		}
		limitSide.add(m)
	}
	return apiSide, limitSide, nil
}

// profileName names the CPU profile of a round of a cell.
func profileName(sc *scenario, concurrency int, side string, round int) string {
	return fmt.Sprintf("%s-c%d-%s-r%d.cpu.prof", sc.name, concurrency, side, round+1)
}

// setup empties the tables and runs the scenario's own setup, if any.
func (b *bench) setup(ctx context.Context, sc *scenario, server *apiServer) error {
	if err := truncate(ctx, b.pool); err != nil {
		return err
	}
	if sc.setup == nil {
		return nil
	}
	slog.InfoContext(ctx, "bench: setting up", slog.String("scenario", sc.name))
	client, err := newAPIClient(server.url, len(sc.stripe.users))
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	if err := sc.setup(ctx, client); err != nil {
		return fmt.Errorf("setting up %s: %w", sc.name, err)
	}
	if _, err := b.pool.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyzing after setup: %w", err)
	}
	return nil
}

// measure runs op at concurrency for one round: a warm-up, then the
// measured run, with the database counters reset between the two and a CPU
// profile of the whole process, named profile, taken during the measured
// run. server is the API for an API cell, nil for a limit cell.
func (b *bench) measure(ctx context.Context, sc *scenario, concurrency int, profile string, op Op, server *apiServer) (*measurement, error) {
	if sc.freshTables {
		if err := truncate(ctx, b.pool); err != nil {
			return nil, err
		}
	}
	RunLoad(ctx, LoadConfig{Concurrency: concurrency, Duration: b.config.warmup}, op)

	cpuBefore, err := readCPU(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	chargesBefore, stripeConnsBefore, apiConnsBefore := sc.stripe.fake.ChargeRequests(), sc.stripe.conns.accepted.Load(), server.accepted()
	profile = filepath.Join(b.config.outDir, profile)
	stopProfile, err := startProfile(profile)
	if err != nil {
		return nil, err
	}
	b.counter.reset()

	stats := RunLoad(ctx, LoadConfig{Concurrency: concurrency, Duration: b.config.duration / time.Duration(b.config.rounds), MaxIterations: b.config.maxIterations}, op)

	m := &measurement{
		apiNewConns:    server.accepted() - apiConnsBefore,
		db:             b.counter.counts(),
		profiles:       []string{profile},
		stats:          stats,
		stripeCharges:  sc.stripe.fake.ChargeRequests() - chargesBefore,
		stripeNewConns: sc.stripe.conns.accepted.Load() - stripeConnsBefore,
	}
	if err := stopProfile(); err != nil {
		return nil, err
	}
	cpuAfter, err := readCPU(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	m.cpu = cpuAfter.since(cpuBefore)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("measuring %s at %d: %w", sc.name, concurrency, err)
	}
	return m, nil
}

// startProfile starts a CPU profile of the whole process into path and
// returns the function that stops it.
func startProfile(path string) (func() error, error) {
	file, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("starting CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := file.Close(); err != nil {
			return fmt.Errorf("writing CPU profile: %w", err)
		}
		return nil
	}, nil
}

// truncate empties every table the scenarios write, keeping the users.
func truncate(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "TRUNCATE idempotency_keys, rides, ride_cancellations, audit_records, staged_jobs")
	if err != nil {
		return fmt.Errorf("emptying tables: %w", err)
	}
	return nil
}

// logFirstError logs the first unexpected answer of a cell, if any.
func logFirstError(ctx context.Context, scenario string, concurrency int, side string, stats *Stats) {
	if stats.FirstError == nil {
		return
	}
	slog.WarnContext(ctx, "bench: unexpected answers", slog.String("scenario", scenario), slog.Int("concurrency", concurrency),
		slog.String("side", side), slog.Int("count", stats.Errors), slog.String("first", stats.FirstError.Error()))
}

// keepProfiles deletes the profiles of the rows that are not in keep, and
// clears them from the rows.
func keepProfiles(rows []*Row, keep map[*Row]bool) error {
	var errs []error
	for _, row := range rows {
		if keep[row] {
			continue
		}
		for _, profile := range slices.Concat(row.Profiles, row.Limit.Profiles) {
			if err := os.Remove(profile); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing profile: %w", err))
			}
		}
		row.Profiles, row.Limit.Profiles = nil, nil
	}
	return errors.Join(errs...)
}
