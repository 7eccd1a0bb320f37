package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/reconcile"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// stripeAPIKey is the key every process gives the Stripe fake, which
// accepts any.
const stripeAPIKey = "sk_test_chaos"

// Settings of the processes, short so that the faults heal within the run.
const (
	completerGrace            = "2s"
	completerInterval         = "1s"
	completerLastRunThreshold = "1s"
	lockTimeout               = "3s" // a killed request's key is taken over after this
	stripeFailAfterRate       = "0.05"
	stripeFailBeforeRate      = "0.05"
	stripeLatency             = "20ms"
	stripeTimeout             = "2s" // under lockTimeout
)

// Bounds of the run's waits.
const (
	drainTimeout = 30 * time.Second // for the clients' last requests, after the load
	readyTimeout = 30 * time.Second // for a process to answer
	stopTimeout  = 10 * time.Second // for a process to shut down
)

// harness runs the processes of one chaos run.
type harness struct {
	api       *process // the API's current process; only the fault loop replaces it
	apiPort   int
	binary    string
	config    *config
	dir       string   // the run's temporary directory: binary and logs
	env       []string // added to every child's environment
	logger    *slog.Logger
	processes []*process // every process started, all by the run's goroutine
	stripeURL string
}

func newHarness(cfg *config, logger *slog.Logger) (*harness, error) {
	dir, err := os.MkdirTemp("", "rocketrides-chaos-")
	if err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	return &harness{binary: cfg.binary, config: cfg, dir: dir, logger: logger}, nil
}

// close kills every process still running and removes the temporary
// directory, unless keepLogs.
func (h *harness) close(keepLogs bool) {
	for _, p := range h.processes {
		p.kill()
	}
	if keepLogs {
		if h.config.binary == "" {
			_ = os.Remove(h.binary) // built here: only the logs are worth keeping
		}
		fmt.Fprintf(os.Stderr, "chaos: the processes' logs are in %s\n", h.dir)
		return
	}
	_ = os.RemoveAll(h.dir)
}

// run runs the whole scenario and returns what it saw. It stops at the
// first error, which it records in the result.
func (h *harness) run(ctx context.Context) *result {
	res := &result{killsPlanned: h.config.kills, seed: h.config.seed}
	res.err = h.runPhases(ctx, res)
	if ctx.Err() != nil {
		res.err = fmt.Errorf("stopped early by a signal or -deadline: %w", context.Cause(ctx))
	}
	return res
}

func (h *harness) runPhases(ctx context.Context, res *result) error {
	if err := h.build(ctx); err != nil {
		return err
	}
	if err := h.resetDatabase(ctx); err != nil {
		return err
	}
	fake, err := h.startStripeFake(ctx)
	if err != nil {
		return err
	}
	h.logger.InfoContext(ctx, "chaos: seeding users")
	if err := h.command(ctx, "seed", "seed"); err != nil {
		return err
	}
	if err := h.startAPI(ctx); err != nil {
		return err
	}
	completer, err := h.start("completer", []string{
		"COMPLETER_GRACE=" + completerGrace,
		"COMPLETER_INTERVAL=" + completerInterval,
		"COMPLETER_LAST_RUN_THRESHOLD=" + completerLastRunThreshold,
	}, "completer")
	if err != nil {
		return err
	}

	if err := h.driveLoad(ctx, res); err != nil {
		return err
	}

	pool, err := db.NewPool(ctx, h.config.databaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := h.runSurges(ctx, pool, res); err != nil {
		return err
	}
	if err := h.settle(ctx, pool, res); err != nil {
		return err
	}
	res.completerExited = completer.exited()
	res.apiExited = h.api.exited()
	h.api.stop(stopTimeout)
	completer.stop(stopTimeout)

	h.logger.InfoContext(ctx, "chaos: reconciling")
	stripe, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: h.stripeURL, APIKey: stripeAPIKey})
	if err != nil {
		return err
	}
	reconciler, err := reconcile.NewReconciler(pool, stripe, &reconcile.ReconcilerConfig{Logger: h.logger})
	if err != nil {
		return err
	}
	res.report, err = reconciler.Run(ctx)
	if err != nil {
		return err
	}
	res.stripeFakeExited = fake.exited()
	res.answersUnmatched, err = unmatchedAnswers(ctx, pool, res.load.rides)
	if err != nil {
		return err
	}
	res.cancelsUnmatched, err = unmatchedCancels(ctx, pool, res.load.cancels.cancelled)
	return err
}

// build builds the rocketrides binary into the temporary directory, unless
// -binary names one.
func (h *harness) build(ctx context.Context) error {
	if h.binary != "" {
		return nil
	}
	h.logger.InfoContext(ctx, "chaos: building rocketrides")
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("finding the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	binary := filepath.Join(h.dir, "rocketrides")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/rocketrides")
	cmd.Dir = root
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building rocketrides: %w\n%s", err, out)
	}
	h.binary = binary
	return nil
}

// resetDatabase drops the run's database, creates it afresh and migrates
// it. It refuses a database whose name does not say it is chaos's.
func (h *harness) resetDatabase(ctx context.Context) error {
	config, err := pgx.ParseConfig(h.config.databaseURL)
	if err != nil {
		return fmt.Errorf("parsing -database-url: %w", err)
	}
	name := config.Database
	if !strings.Contains(name, "chaos") {
		return fmt.Errorf("refusing to drop database %q: chaos drops its database, so its name must contain \"chaos\"", name)
	}
	h.logger.InfoContext(ctx, "chaos: recreating the database", slog.String("database", name))
	config.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return fmt.Errorf("connecting to the server: %w", err)
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	_ = conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	h.env = append(h.env, "DATABASE_URL="+h.config.databaseURL, "LOCK_TIMEOUT="+lockTimeout)
	return h.command(ctx, "migrate", "migrate", "up")
}

// command runs a subcommand to its end, its output in its log.
func (h *harness) command(ctx context.Context, name string, args ...string) error {
	logPath := filepath.Join(h.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating %s's log: %w", name, err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, h.binary, args...)
	cmd.Env = append(os.Environ(), h.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("rocketrides %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startStripeFake starts the Stripe fake with latency and failures, and
// points every other process at it.
func (h *harness) startStripeFake(ctx context.Context) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	fake, err := h.start("stripe-fake", []string{"LOG_LEVEL=warn"}, "stripe-fake",
		"--addr", "127.0.0.1:"+strconv.Itoa(port),
		"--latency", stripeLatency,
		"--fail-before-rate", stripeFailBeforeRate,
		"--fail-after-rate", stripeFailAfterRate,
		"--seed", strconv.FormatInt(int64(h.config.seed>>1), 10), // an int64
	)
	if err != nil {
		return nil, err
	}
	h.stripeURL = "http://127.0.0.1:" + strconv.Itoa(port)
	if _, err := waitReady(ctx, fake, h.stripeURL+"/v1/charges?limit=1", readyTimeout); err != nil {
		return nil, err
	}
	h.env = append(h.env,
		"STRIPE_API_BASE="+h.stripeURL,
		"STRIPE_API_KEY="+stripeAPIKey,
		"STRIPE_TIMEOUT="+stripeTimeout,
	)
	return fake, nil
}

// startAPI starts the API, on the same port every time, and waits until it
// is ready.
func (h *harness) startAPI(ctx context.Context) error {
	if h.apiPort == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		h.apiPort = port
	}
	// The load authenticates as the demo users, by email.
	api, err := h.start("api", []string{"API_HOST=127.0.0.1", "API_PORT=" + strconv.Itoa(h.apiPort), "AUTH_MODE=demo", "REQUEST_DEADLINE=" + requestDeadline}, "api")
	if err != nil {
		return err
	}
	h.api = api
	_, err = waitReady(ctx, api, h.apiURL()+"/readyz", readyTimeout)
	return err
}

func (h *harness) apiURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(h.apiPort)
}

// settle waits until no key is unfinished, or the settle timeout.
func (h *harness) settle(ctx context.Context, pool *pgxpool.Pool, res *result) error {
	h.logger.InfoContext(ctx, "chaos: waiting for the completer to finish every key")
	start := time.Now()
	settleCtx, cancel := context.WithTimeout(ctx, h.config.settleTimeout)
	defer cancel()
	for {
		err := pool.QueryRow(settleCtx, "SELECT count(*) FROM idempotency_keys WHERE recovery_point <> 'finished'").Scan(&res.unfinishedAfterSettle)
		if err != nil && settleCtx.Err() == nil {
			return fmt.Errorf("counting unfinished keys: %w", err)
		}
		res.settledIn = time.Since(start)
		if res.unfinishedAfterSettle == 0 {
			return nil
		}
		if !sleep(settleCtx, 500*time.Millisecond) {
			// Nil if only the settle timeout passed: the run goes on to
			// reconcile, which reports what is left.
			return ctx.Err()
		}
	}
}

// unmatchedAnswers counts the 201 answers whose ride does not exist with
// the charge the answer named.
func unmatchedAnswers(ctx context.Context, pool *pgxpool.Pool, answered map[int64]string) (int, error) {
	rideIDs := make([]int64, 0, len(answered))
	chargeIDs := make([]string, 0, len(answered))
	for rideID, chargeID := range answered {
		rideIDs = append(rideIDs, rideID)
		chargeIDs = append(chargeIDs, chargeID)
	}
	var unmatched int
	err := pool.QueryRow(ctx, `
		SELECT count(*)
		FROM unnest($1::bigint[], $2::text[]) AS answer (ride_id, charge_id)
		LEFT JOIN rides r ON r.id = answer.ride_id AND r.stripe_charge_id = answer.charge_id
		WHERE r.id IS NULL`, rideIDs, chargeIDs).Scan(&unmatched)
	if err != nil {
		return 0, fmt.Errorf("checking the rides of 201 answers: %w", err)
	}
	return unmatched, nil
}
