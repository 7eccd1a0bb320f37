package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// faultKind is what the fault loop does at one moment of the load.
type faultKind int

const (
	faultKillAPI faultKind = iota
	faultRestartPostgres
)

// fault is one fault of the plan, at some time after the load began.
type fault struct {
	at   time.Duration
	kind faultKind
}

// planFaults spreads the kills over random moments of the load, keeping
// clear of its first second and its last three, and puts the restart of
// PostgreSQL somewhere in its middle third.
func planFaults(rng *rand.Rand, duration time.Duration, kills int) []fault {
	const margin = time.Second
	window := duration - 3*time.Second - margin
	plan := []fault{{at: duration/3 + randomDuration(rng, duration/3), kind: faultRestartPostgres}}
	for range kills {
		plan = append(plan, fault{at: margin + randomDuration(rng, window), kind: faultKillAPI})
	}
	slices.SortFunc(plan, func(a, b fault) int { return cmp.Compare(a.at, b.at) })
	return plan
}

// randomDuration returns a duration in [0, d).
func randomDuration(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(d)))
}

// runFaults carries out plan, one fault after the other, each at its time
// after start or as soon as the one before is done, until the plan is done
// or loadCtx ends. Recovering from a fault (restarting the API, waiting for
// it) runs on ctx, so it completes even after the load.
func (h *harness) runFaults(ctx, loadCtx context.Context, start time.Time, plan []fault, res *result) error {
	for _, f := range plan {
		if !sleep(loadCtx, time.Until(start.Add(f.at))) {
			return nil
		}
		var err error
		switch f.kind {
		case faultKillAPI:
			err = h.killAPI(ctx, res)
		case faultRestartPostgres:
			err = h.restartPostgres(ctx, res)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// killAPI kills the API with SIGKILL, whatever it is doing, and starts it
// again. An API found already dead is counted as a crash.
func (h *harness) killAPI(ctx context.Context, res *result) error {
	if h.api.exited() {
		res.apiCrashes++
		h.logger.WarnContext(ctx, "chaos: the API had exited on its own (see api.log)")
	} else {
		h.api.kill()
		res.kills++
	}
	start := time.Now()
	if err := h.startAPI(ctx); err != nil {
		return err
	}
	h.logger.InfoContext(ctx, "chaos: API killed and restarted",
		slog.Int("kill", res.kills), slog.Duration("ready_after", time.Since(start).Round(time.Millisecond)))
	return nil
}

// postgresRestart is what became of the restart of PostgreSQL.
type postgresRestart struct {
	apiReadyAfter time.Duration // after the restart, until the API answered /readyz
	apiSurvived   bool          // the API came back by itself, without a restart
	done          bool
	err           error  // the restart command failed
	skipped       string // why there was no restart
	took          time.Duration
}

// restartPostgres restarts PostgreSQL, if it may, and checks that the API,
// left alone, is ready again: its pool must reconnect on its own.
func (h *harness) restartPostgres(ctx context.Context, res *result) error {
	restart := &res.postgres
	args, skipped := h.postgresRestartCommand(ctx)
	if skipped != "" {
		restart.skipped = skipped
		h.logger.InfoContext(ctx, "chaos: not restarting PostgreSQL", slog.String("reason", skipped))
		return nil
	}
	h.logger.InfoContext(ctx, "chaos: restarting PostgreSQL", slog.String("command", strings.Join(args, " ")))
	start := time.Now()
	if err := h.restartCommand(ctx, args); err != nil {
		restart.err = err
		return nil
	}
	restart.done = true
	restart.took = time.Since(start)

	readyAfter, err := waitReady(ctx, h.api, h.apiURL()+"/readyz", readyTimeout)
	switch {
	case err == nil:
		restart.apiSurvived = true
		restart.apiReadyAfter = readyAfter
		h.logger.InfoContext(ctx, "chaos: PostgreSQL restarted, the API is ready again",
			slog.Duration("restart_took", restart.took.Round(time.Millisecond)), slog.Duration("api_ready_after", readyAfter.Round(time.Millisecond)))
		return nil
	case errors.Is(err, errExited):
		h.logger.ErrorContext(ctx, "chaos: the API died when PostgreSQL restarted (see api.log)")
		return h.startAPI(ctx) // the run goes on; the result fails
	default:
		return fmt.Errorf("after PostgreSQL restarted: %w", err)
	}
}

// restartCommand runs the restart command, its output in a log file: the
// server it starts may inherit its stdout and hold a pipe open forever.
func (h *harness) restartCommand(ctx context.Context, args []string) error {
	logPath := filepath.Join(h.dir, "postgres-restart.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating the restart's log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// postgresRestartCommand returns the command that restarts the server of
// the run's database, or why there is none: -postgres-restart=never; no
// pg_ctlcluster, or no root to run it; no cluster on the database's port;
// or, with auto, clients of other databases on the server, which a restart
// would disconnect.
func (h *harness) postgresRestartCommand(ctx context.Context) (args []string, skipped string) {
	switch {
	case h.config.postgresRestart == "never":
		return nil, "disabled by -postgres-restart=never"
	case h.config.postgresRestartCommand != "":
		return []string{"sh", "-c", h.config.postgresRestartCommand}, ""
	}
	if _, err := exec.LookPath("pg_ctlcluster"); err != nil {
		return nil, "pg_ctlcluster not found (-postgres-restart-command names another way)"
	}
	if os.Geteuid() != 0 {
		return nil, "not root, which pg_ctlcluster needs"
	}
	config, err := pgx.ParseConfig(h.config.databaseURL)
	if err != nil {
		return nil, err.Error()
	}
	version, cluster, err := findCluster(ctx, config.Port)
	if err != nil {
		return nil, err.Error()
	}
	if h.config.postgresRestart == "auto" {
		others, err := otherClients(ctx, config)
		if err != nil {
			return nil, err.Error()
		}
		if others > 0 {
			return nil, fmt.Sprintf("%d clients of other databases are connected to this server, and a restart would cut them off (-postgres-restart=always restarts anyway)", others)
		}
	}
	return []string{"pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"}, ""
}

// findCluster returns the version and name of the local cluster listening
// on port, from pg_lsclusters.
func findCluster(ctx context.Context, port uint16) (version, cluster string, err error) {
	out, err := exec.CommandContext(ctx, "pg_lsclusters", "--no-header").Output()
	if err != nil {
		return "", "", fmt.Errorf("pg_lsclusters: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line) // Ver Cluster Port Status Owner ...
		if len(fields) >= 3 && fields[2] == strconv.Itoa(int(port)) {
			return fields[0], fields[1], nil
		}
	}
	return "", "", fmt.Errorf("no cluster of pg_lsclusters listens on port %d", port)
}

// otherClients counts the clients connected to the server, other than to
// config's database.
func otherClients(ctx context.Context, config *pgx.ConnConfig) (int, error) {
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return 0, fmt.Errorf("connecting to count other clients: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var others int
	err = conn.QueryRow(ctx, `
		SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend'
			AND pid <> pg_backend_pid()
			AND datname IS DISTINCT FROM current_database()`).Scan(&others)
	if err != nil {
		return 0, fmt.Errorf("counting other clients: %w", err)
	}
	return others, nil
}
