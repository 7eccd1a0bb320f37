// Command chaos proves rocket-rides under faults. It runs the real processes,
// each on its own, on loopback ports, against a fresh database: the Stripe
// fake (slow, and failing 5% of charges before and 5% after recording
// them, and as many refunds), the API and the completer. Retrying clients
// send POST /rides, half of them asking for a failure on their first
// attempt, and cancel a share of the rides created (POST /rides/{id}/cancel,
// retried with its own key, some abandoned to the completer), while the API
// is killed with SIGKILL at random moments and restarted, and PostgreSQL is
// restarted once if that is allowed (see -postgres-restart). Reconcile runs
// again and again during the load. Then the load stops, the completer
// finishes what the clients left, and the database is reconciled with
// Stripe.
//
// It prints one line per figure and exits non-zero if an invariant fails:
// no double charge, no ride charged while its key is unfinished, every key
// finished (201, or a stored 402 or 503), reconcile OK, every 201 answer
// names its own charged ride, every retrying client got a definitive
// answer, every planned kill happened, no process died on its own (the API
// must survive the database's restart without being restarted), no ride
// refunded twice, every cancelled ride has exactly one full refund, every
// 200 cancel names its own cancelled ride and refund, every cancelling
// client got a definitive answer, and no run of reconcile during the load
// reported a difference.
//
// Run it from the repository's root:
//
//	go run ./chaos
//
// It takes about two minutes, sends traffic to loopback addresses only,
// drops and recreates its database (rocketrides_chaos by default) at the
// start, and leaves it for a look afterwards. Child processes are killed
// when it ends, on Ctrl-C, or at the hard deadline (-deadline). Their logs
// are kept only when the run fails (or with -keep).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Defaults of the flags.
const (
	concurrencyDefault     = 8
	databaseURLDefault     = "postgres://127.0.0.1:5432/rocketrides_chaos?sslmode=disable"
	deadlineDefault        = 4 * time.Minute
	durationDefault        = 90 * time.Second
	killsDefault           = 12
	postgresRestartDefault = "auto"
	rateDefault            = 30
	settleTimeoutDefault   = 75 * time.Second
)

// config is the run's settings, from flags.
type config struct {
	binary                 string
	concurrency            int
	databaseURL            string
	deadline               time.Duration
	duration               time.Duration
	keep                   bool
	kills                  int
	postgresRestart        string
	postgresRestartCommand string
	rate                   float64
	seed                   uint64
	settleTimeout          time.Duration
}

func main() {
	os.Exit(run())
}

// run runs chaos and returns the exit code.
func run() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.deadline)
	defer cancel()

	h, err := newHarness(cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	res := h.run(ctx)
	passed := res.write(os.Stdout)
	h.close(!passed || cfg.keep)
	if !passed {
		return 1
	}
	return 0
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	flags := flag.NewFlagSet("chaos", flag.ContinueOnError)
	flags.StringVar(&cfg.binary, "binary", "", "rocketrides binary to run; empty builds ./cmd/rocketrides")
	flags.IntVar(&cfg.concurrency, "concurrency", concurrencyDefault, "clients sending requests at once")
	flags.StringVar(&cfg.databaseURL, "database-url", cmp.Or(os.Getenv("CHAOS_DATABASE_URL"), databaseURLDefault),
		"database to drop and recreate (env CHAOS_DATABASE_URL); its name must contain \"chaos\"")
	flags.DurationVar(&cfg.deadline, "deadline", deadlineDefault, "hard bound on the whole run")
	flags.DurationVar(&cfg.duration, "duration", durationDefault, "how long the load and the faults last")
	flags.BoolVar(&cfg.keep, "keep", false, "keep the processes' logs even if the run passes")
	flags.IntVar(&cfg.kills, "kills", killsDefault, "how many times the API is killed with SIGKILL")
	flags.StringVar(&cfg.postgresRestart, "postgres-restart", postgresRestartDefault,
		"restart PostgreSQL once mid-run: auto (if pg_ctlcluster and root are available and no other database has clients), always, or never")
	flags.StringVar(&cfg.postgresRestartCommand, "postgres-restart-command", "",
		"shell command that restarts the PostgreSQL server of -database-url, instead of pg_ctlcluster")
	flags.Float64Var(&cfg.rate, "rate", rateDefault, "new requests per second, across the clients")
	flags.Uint64Var(&cfg.seed, "seed", 0, "seed of the faults and the clients' choices; 0 picks one")
	flags.DurationVar(&cfg.settleTimeout, "settle-timeout", settleTimeoutDefault, "longest wait for the completer to finish every key after the load")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case cfg.concurrency < 1:
		return nil, fmt.Errorf("invalid -concurrency %d", cfg.concurrency)
	case cfg.duration < 10*time.Second:
		return nil, fmt.Errorf("invalid -duration %s: at least 10s", cfg.duration)
	case cfg.kills < 0:
		return nil, fmt.Errorf("invalid -kills %d", cfg.kills)
	case cfg.rate <= 0:
		return nil, fmt.Errorf("invalid -rate %g", cfg.rate)
	case cfg.postgresRestart != "auto" && cfg.postgresRestart != "always" && cfg.postgresRestart != "never":
		return nil, fmt.Errorf("invalid -postgres-restart %q (want auto, always or never)", cfg.postgresRestart)
	}
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	return cfg, nil
}
