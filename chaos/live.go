package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/reconcile"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// Bounds of the runs of reconcile during the load.
const (
	liveReconcileInterval = 2 * time.Second  // between the end of a run and the next
	liveReconcileTimeout  = 30 * time.Second // for one run
)

// liveReconcile is what the runs of reconcile during the load found: each
// must be exact, although requests, kills and Stripe faults go on while it
// reads (issue 13 goal 7).
type liveReconcile struct {
	// differing counts the completed runs that reported a difference.
	differing int

	// failed counts the runs that could not complete, such as while
	// PostgreSQL restarts; lastError is the last one's error.
	failed    int
	lastError string

	// firstDifference is the first differing run's problems, one a line.
	firstDifference string

	// rechecked sums, over the completed runs, the charges and refunds
	// that the database as first read did not explain and a second look
	// found in flight.
	rechecked int

	// runs counts the completed runs.
	runs int
}

// reconcileDuringLoad runs reconcile again and again until loadCtx ends, on
// a pool of its own, and returns what the runs found.
func (h *harness) reconcileDuringLoad(loadCtx context.Context) *liveReconcile {
	live := &liveReconcile{}
	pool, err := db.NewPool(loadCtx, h.config.databaseURL, 2)
	if err != nil {
		live.failed, live.lastError = 1, err.Error()
		return live
	}
	defer pool.Close()
	stripe, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: h.stripeURL, APIKey: stripeAPIKey})
	if err != nil {
		live.failed, live.lastError = 1, err.Error()
		return live
	}
	reconciler, err := reconcile.NewReconciler(pool, stripe, nil)
	if err != nil {
		live.failed, live.lastError = 1, err.Error()
		return live
	}
	for sleep(loadCtx, liveReconcileInterval) {
		runCtx, cancel := context.WithTimeout(context.WithoutCancel(loadCtx), liveReconcileTimeout)
		report, err := reconciler.Run(runCtx)
		cancel()
		switch {
		case err != nil:
			live.failed++
			live.lastError = err.Error()
		case !report.OK():
			live.runs++
			live.differing++
			if live.firstDifference == "" {
				live.firstDifference = failedLines(report)
			}
			h.logger.WarnContext(loadCtx, "chaos: reconcile during the load found a difference", slog.String("problems", failedLines(report)))
		default:
			live.runs++
			live.rechecked += report.Rechecked
		}
	}
	return live
}

// failedLines are the lines of report's problems that were found.
func failedLines(report *reconcile.Report) string {
	var out bytes.Buffer
	_ = report.Write(&out)
	var lines []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, " FAIL (") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(lines, "\n")
}

// describe says what the runs found, on one line.
func (l *liveReconcile) describe() string {
	s := fmt.Sprintf("%d runs, %d with a difference; %d charges and refunds in flight explained by the second look",
		l.runs, l.differing, l.rechecked)
	if l.failed > 0 {
		s += fmt.Sprintf("; %d runs could not complete (last: %s)", l.failed, l.lastError)
	}
	return s
}
