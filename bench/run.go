package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/roundtrips"
)

// The sides of a cell.
const (
	sideAPI   = "api"
	sideLimit = "limit"
	sidePeer  = "peer"

	// sideBare is the limit's new keys behind a bare net/http handler: not
	// the yardstick of the ratio (the limit has no HTTP), but the floor of
	// the CPU that any handler on net/http, pgx and a net/http client of
	// Stripe spends per new key.
	sideBare = "bare"
)

// bench is one run: the database, the proxies that count its round trips,
// the Stripe fake, the rocketrides binary, and the settings that every cell
// shares.
type bench struct {
	config *config
	binary string
	dir    string

	// pool is the bench's own: setup, emptying tables, reading CPU.
	pool *pgxpool.Pool

	// proxies count the round trips of each side (sideAPI, sideLimit,
	// sidePeer, sideBare) during the calibrations, on a proxy of its own.
	proxies map[string]*roundtrips.Proxy

	rides  *rideSupply
	stripe *stripeStack
}

// side is one of a cell's systems: its operation, and the process whose
// CPU is its own (nil for the limit, which runs in the bench's process).
type side struct {
	name    string
	process *server
	op      func(client *http.Client) Op
}

// measurement is what one side measured in a cell: its calibration and its
// timed rounds.
type measurement struct {
	calibration     roundtrips.Counts
	calibrationReqs int
	cpu             cpuUsage
	processCPU      time.Duration
	processPeakRSS  int64
	stats           *Stats
}

// add adds the timed figures of another round.
func (m *measurement) add(round *measurement) {
	m.cpu.add(round.cpu)
	m.processCPU += round.processCPU
	m.processPeakRSS = max(m.processPeakRSS, round.processPeakRSS)
	m.stats.add(round.stats)
}

// scenarioEnv is what a scenario's cells run on: every side, on
// PostgreSQL's own URL, or each on its own proxy's.
type scenarioEnv struct {
	api  *server
	peer *server
	lim  *limit

	// replayLimit serves the replays' limit, the bare handler; bare
	// serves the bare handler as a side of its own (scenario.bare).
	replayLimit *server
	bare        *server

	closers []func()
}

// close stops everything, last started first.
func (e *scenarioEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// proxiedURL is databaseURL with its host and port the proxy's at
// proxyAddr.
func proxiedURL(databaseURL, proxyAddr string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("parsing the database URL: %w", err)
	}
	u.Host = proxyAddr
	query := u.Query()
	query.Set("sslmode", "disable") // the proxy reads the protocol in clear
	u.RawQuery = query.Encode()
	return u.String(), nil
}

// start brings up every side of sc, each on the database URL that database
// gives for its name; name tells their logs apart.
func (b *bench) start(ctx context.Context, sc *scenario, database func(side string) string, name string) (*scenarioEnv, error) {
	env := &scenarioEnv{}
	fail := func(err error) (*scenarioEnv, error) {
		env.close()
		return nil, err
	}
	api, err := b.startAPI(ctx, "api-"+name, database(sideAPI), sc.isolation, true)
	if err != nil {
		return fail(err)
	}
	env.closers = append(env.closers, api.stop)
	env.api = api
	lim, err := newLimit(ctx, database(sideLimit), b.config.poolMaxConns, maxOf(sc.concurrencies), sc.isolation, b.stripe.url)
	if err != nil {
		return fail(err)
	}
	env.closers = append(env.closers, lim.close)
	env.lim = lim
	if sc.name == scenarioReplays {
		replayLimit, err := b.startBare(ctx, "replay-limit-"+name, database(sideLimit), 1)
		if err != nil {
			return fail(err)
		}
		env.closers = append(env.closers, replayLimit.stop)
		env.replayLimit = replayLimit
	}
	if sc.bare {
		bare, err := b.startBare(ctx, "bare-"+name, database(sideBare), maxOf(sc.concurrencies))
		if err != nil {
			return fail(err)
		}
		env.closers = append(env.closers, bare.stop)
		env.bare = bare
	}
	if sc.peer && !b.config.noPeer {
		peer, err := b.startPeer(ctx, "peer-"+name, database(sidePeer))
		if err != nil {
			return fail(err)
		}
		env.closers = append(env.closers, peer.stop)
		env.peer = peer
	}
	return env, nil
}

// sides returns the sides of sc on env.
func (b *bench) sides(sc *scenario, env *scenarioEnv) []*side {
	users := b.stripe
	sides := []*side{
		{name: sideAPI, process: env.api, op: func(c *http.Client) Op { return sc.httpOp(c, env.api.url, sideAPI, users) }},
		{name: sideLimit, op: func(c *http.Client) Op { return sc.limitOp(c, "", env.lim, users) }},
	}
	if env.replayLimit != nil {
		sides[1] = &side{name: sideLimit, process: env.replayLimit, op: func(c *http.Client) Op {
			return sc.limitOp(c, env.replayLimit.url, env.lim, users)
		}}
	}
	if env.peer != nil {
		sides = append(sides, &side{name: sidePeer, process: env.peer, op: func(c *http.Client) Op { return sc.httpOp(c, env.peer.url, sidePeer, users) }})
	}
	if env.bare != nil {
		sides = append(sides, &side{name: sideBare, process: env.bare, op: func(c *http.Client) Op { return sc.httpOp(c, env.bare.url, sideBare, users) }})
	}
	return sides
}

// runScenario runs sc at each of its concurrencies: first the calibration
// of every cell, with every side on the proxy, then the timed runs, with
// every side straight on PostgreSQL. One set of sides at a time keeps the
// connections open within the server's max_connections.
func (b *bench) runScenario(ctx context.Context, sc *scenario) ([]*Row, error) {
	proxied := make(map[string]string)
	for name, proxy := range b.proxies {
		url, err := proxiedURL(b.config.databaseURL, proxy.Addr())
		if err != nil {
			return nil, err
		}
		proxied[name] = url
	}
	env, err := b.start(ctx, sc, func(side string) string { return proxied[side] }, sc.name+"-calibration")
	if err != nil {
		return nil, err
	}
	measured, err := b.setupAndCalibrate(ctx, sc, env)
	env.close()
	if err != nil {
		return nil, err
	}

	env, err = b.start(ctx, sc, func(string) string { return b.config.databaseURL }, sc.name)
	if err != nil {
		return nil, err
	}
	defer env.close()
	sides := b.sides(sc, env)
	var rows []*Row
	for _, concurrency := range sc.concurrencies {
		if err := b.runCell(ctx, sc, concurrency, sides, measured[concurrency]); err != nil {
			return nil, err
		}
		row := newRow(sc, concurrency, b.config.poolMaxConns, measured[concurrency])
		slog.InfoContext(ctx, "bench: cell done", slog.String("scenario", sc.name), slog.Int("concurrency", concurrency),
			slog.Float64("api_rps", row.APIRPS), slog.Float64("limit_rps", row.LimitRPS), slog.Float64("ratio", row.Ratio),
			slog.Float64("api_round_trips", row.API.RoundTripsPerRequest), slog.Float64("limit_round_trips", row.Limit.RoundTripsPerRequest))
		for _, s := range sides {
			logFirstError(ctx, sc.name, concurrency, s.name, measured[concurrency][s.name].stats)
		}
		rows = append(rows, row)
	}
	if sc.remaining != nil && sc.remaining() == 0 {
		slog.WarnContext(ctx, "bench: the scenario ran out of rides to cancel; raise -cancel-rides", slog.String("scenario", sc.name))
	}
	return rows, nil
}

// setupAndCalibrate empties the tables, runs sc's setup on env, then
// calibrates every side of env at each concurrency. It returns each cell's
// measurements, by concurrency and side, with their calibration filled in.
func (b *bench) setupAndCalibrate(ctx context.Context, sc *scenario, env *scenarioEnv) (map[int]map[string]*measurement, error) {
	if err := truncate(ctx, b.pool); err != nil {
		return nil, err
	}
	if sc.setup != nil {
		slog.InfoContext(ctx, "bench: setting up", slog.String("scenario", sc.name))
		peerURL := ""
		if env.peer != nil {
			peerURL = env.peer.url
		}
		if err := sc.setup(ctx, b, env.api.url, peerURL); err != nil {
			return nil, fmt.Errorf("setting up %s: %w", sc.name, err)
		}
		if _, err := b.pool.Exec(ctx, "ANALYZE"); err != nil {
			return nil, fmt.Errorf("analyzing after setup: %w", err)
		}
	}
	measured := make(map[int]map[string]*measurement)
	for _, concurrency := range sc.concurrencies {
		measured[concurrency] = make(map[string]*measurement)
		for _, s := range b.sides(sc, env) {
			client := newHTTPClient(concurrency)
			m := &measurement{stats: newStats()}
			var err error
			m.calibration, m.calibrationReqs, err = b.calibrate(ctx, sc, concurrency, s.op(client), b.proxies[s.name])
			client.CloseIdleConnections()
			if err != nil {
				return nil, fmt.Errorf("calibrating %s of %s at %d: %w", s.name, sc.name, concurrency, err)
			}
			measured[concurrency][s.name] = m
		}
	}
	return measured, nil
}

// runCell alternates between the sides at concurrency, config.rounds
// times, so that noise on the machine (other work shares it) hits them
// alike, adding each round to measured.
func (b *bench) runCell(ctx context.Context, sc *scenario, concurrency int, sides []*side, measured map[string]*measurement) error {
	clients := make(map[string]*http.Client)
	for _, s := range sides {
		clients[s.name] = newHTTPClient(concurrency)
		defer clients[s.name].CloseIdleConnections()
	}
	for range b.config.rounds {
		for _, s := range sides {
			round, err := b.measure(ctx, sc, concurrency, s.op(clients[s.name]), s.process)
			if err != nil {
				return fmt.Errorf("measuring %s of %s at %d: %w", s.name, sc.name, concurrency, err)
			}
			measured[s.name].add(round)
		}
	}
	return nil
}

// loadConfig bounds a run of sc at concurrency to duration, and to the
// iterations sc has left.
func (b *bench) loadConfig(sc *scenario, concurrency int, duration time.Duration) LoadConfig {
	cfg := LoadConfig{Concurrency: concurrency, Duration: duration, MaxIterations: b.config.maxIterations}
	if sc.remaining != nil {
		cfg.MaxIterations = min(cfg.MaxIterations, sc.remaining())
	}
	return cfg
}

// calibrate runs op through its side's proxy, a warm-up then a counted run, and
// returns the round trips and transactions that the counted run's requests
// took, and how many requests it made.
func (b *bench) calibrate(ctx context.Context, sc *scenario, concurrency int, op Op, proxy *roundtrips.Proxy) (roundtrips.Counts, int, error) {
	if sc.freshTables {
		if err := truncate(ctx, b.pool); err != nil {
			return roundtrips.Counts{}, 0, err
		}
	}
	RunLoad(ctx, b.loadConfig(sc, concurrency, b.config.calibrationWarmup), op)
	proxy.Reset()
	stats := RunLoad(ctx, b.loadConfig(sc, concurrency, b.config.calibration), op)
	counts := proxy.Counts()
	if err := ctx.Err(); err != nil {
		return roundtrips.Counts{}, 0, err
	}
	if stats.Errors > 0 {
		slog.WarnContext(ctx, "bench: unexpected answers while calibrating", slog.String("scenario", sc.name),
			slog.Int("concurrency", concurrency), slog.Int("count", stats.Errors), slog.String("first", stats.FirstError.Error()))
	}
	return counts, stats.Requests(), nil
}

// measure runs op at concurrency for one round: a warm-up, then the timed
// run, with the CPU of the machine, of PostgreSQL's backends, of this
// process and of process (the side's own, nil for the limit) read around
// it, and process's memory sampled during it.
func (b *bench) measure(ctx context.Context, sc *scenario, concurrency int, op Op, process *server) (*measurement, error) {
	if sc.freshTables {
		if err := truncate(ctx, b.pool); err != nil {
			return nil, err
		}
	}
	RunLoad(ctx, b.loadConfig(sc, concurrency, b.config.warmup), op)

	cpuBefore, err := readCPU(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	var before procUsage
	var sampler *rssSampler
	if process != nil {
		if before, err = process.usage(); err != nil {
			return nil, err
		}
		sampler = sampleRSS(process)
	}
	stats := RunLoad(ctx, b.loadConfig(sc, concurrency, b.config.duration/time.Duration(b.config.rounds)), op)
	m := &measurement{stats: stats}
	if process != nil {
		m.processPeakRSS = sampler.stop()
		after, err := process.usage()
		if err != nil {
			return nil, err
		}
		m.processCPU = after.cpu - before.cpu
	}
	cpuAfter, err := readCPU(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	m.cpu = cpuAfter.since(cpuBefore)
	return m, ctx.Err()
}

// rssSampler samples a process's RSS every 100 ms and keeps the peak.
type rssSampler struct {
	done chan struct{}
	peak chan int64
}

// sampleRSS starts sampling process's RSS.
func sampleRSS(process *server) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), peak: make(chan int64, 1)}
	go func() {
		var peak int64
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			if usage, err := process.usage(); err == nil {
				peak = max(peak, usage.rssBytes)
			}
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-ticker.C:
			}
		}
	}()
	return s
}

// stop stops sampling and returns the peak RSS, in bytes.
func (s *rssSampler) stop() int64 {
	close(s.done)
	return <-s.peak
}

// startAPI starts `rocketrides api` on database, at isolation, in demo
// mode, on the bench's Stripe fake, its log at warn. admitAll sets its
// admission bounds above any concurrency of the bench and its pool to the
// limit's size; otherwise it runs with its defaults.
func (b *bench) startAPI(ctx context.Context, name, database, isolation string, admitAll bool) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	env := []string{
		"ADMIN_PORT=" + adminAddr,
		"API_HOST=" + host,
		"API_PORT=" + port,
		"AUTH_MODE=demo",
		"DATABASE_URL=" + database,
		"LOG_LEVEL=warn",
		"PHASE_ISOLATION=" + isolation,
		"STRIPE_API_BASE=" + b.stripe.url,
		"STRIPE_API_KEY=" + stripeAPIKey,
	}
	if admitAll {
		// The throughput scenarios measure the engine against its limit
		// at each concurrency, not the shedding (the overload scenario
		// measures that, with the defaults).
		env = append(env, "API_MAX_IN_FLIGHT=100000", "API_MAX_WORKING=100000", "DB_MAX_CONNS="+strconv.Itoa(b.config.poolMaxConns))
	}
	return startServer(ctx, b.dir, name, b.binary, []string{"api"}, env, "http://"+addr, "/readyz")
}

// startBare starts the bare handler as a process of its own: this binary
// again, in its serve-bare mode, on database, for up to concurrency
// requests at once.
func (b *bench) startBare(ctx context.Context, name, database string, concurrency int) (*server, error) {
	return b.startSelf(ctx, name, serveBareMode, "-database-url", database, "-pool-max-conns", strconv.Itoa(b.config.poolMaxConns),
		"-concurrency", strconv.Itoa(concurrency), "-stripe-url", b.stripe.url)
}

// startPeer starts the peer as a process of its own: this binary again, in
// its serve-peer mode, on database and the bench's Stripe fake.
func (b *bench) startPeer(ctx context.Context, name, database string) (*server, error) {
	return b.startSelf(ctx, name, servePeerMode, "-database-url", database, "-stripe-url", b.stripe.url,
		"-pool-max-conns", strconv.Itoa(b.config.poolMaxConns))
}

// startSelf runs this binary in mode with args and -addr, a free loopback
// address, and waits until it answers GET /readyz.
func (b *bench) startSelf(ctx context.Context, name, mode string, args ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench's binary: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args = append([]string{mode, "-addr", addr}, args...)
	return startServer(ctx, b.dir, name, self, args, nil, "http://"+addr, "/readyz")
}

// truncate empties every table the scenarios write, keeping the users.
func truncate(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "TRUNCATE idempotency_keys, rides, ride_cancellations, audit_records, staged_jobs")
	if err != nil {
		return fmt.Errorf("emptying tables: %w", err)
	}
	return nil
}

// logFirstError logs the first unexpected answer of a side in a cell, if
// any.
func logFirstError(ctx context.Context, scenario string, concurrency int, side string, stats *Stats) {
	if stats.FirstError == nil {
		return
	}
	slog.WarnContext(ctx, "bench: unexpected answers", slog.String("scenario", scenario), slog.Int("concurrency", concurrency),
		slog.String("side", side), slog.Int("count", stats.Errors), slog.String("first", stats.FirstError.Error()))
}

// maxOf is the largest of values, at least 1.
func maxOf(values []int) int {
	m := 1
	for _, v := range values {
		m = max(m, v)
	}
	return m
}
