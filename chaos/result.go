package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rocketrides/rocketrides/reconcile"
)

// result is what a run saw.
type result struct {
	answersUnmatched      int  // 201 answers whose ride does not hold the charge they named
	apiCrashes            int  // times the API was found dead without being killed
	apiExited             bool // the API was dead at the end
	completerExited       bool
	err                   error // the run could not go on
	kills                 int
	killsPlanned          int
	load                  loadStats
	postgres              postgresRestart
	report                *reconcile.Report
	seed                  uint64
	settledIn             time.Duration
	stripeFakeExited      bool
	surges                surgeStats
	unfinishedAfterSettle int
}

// Statuses of an invariant.
const (
	checkFailed  = "FAIL"
	checkOK      = "ok"
	checkSkipped = "skipped"
)

// check is one invariant and whether it held.
type check struct {
	name   string
	status string
}

// checks judges the run's invariants.
func (r *result) checks() []check {
	report := r.report
	reconciled := report != nil
	restart := r.postgres
	checks := []check{
		{"the run completed", judge(r.err == nil)},
		{"no double charge", judge(reconciled && report.DoubleCharges.Count == 0)},
		{"no ride charged while its key is unfinished", judge(reconciled && report.RidesChargedKeyUnfinished.Count == 0)},
		{"every key finished (201, or a stored 402 or 503)", judge(reconciled && report.KeysUnfinished == 0)},
		{"reconcile OK", judge(reconciled && report.OK())},
		{"every 201 answer names its own charged ride", judge(reconciled && r.answersUnmatched == 0 && r.load.sharedRides == 0)},
		{"every retrying client got an expected definitive answer", judge(r.load.gaveUp == 0 && r.load.interrupted == 0 && unexpectedAnswers(r.load.answers) == 0)},
		{"the API was killed as often as planned", judge(r.kills >= r.killsPlanned)},
		{"the API survived PostgreSQL's restart without being restarted", judge(restart.apiSurvived)},
		{"no process died on its own", judge(r.apiCrashes == 0 && !r.apiExited && !r.completerExited && !r.stripeFakeExited)},
	}
	if restart.skipped != "" {
		checks[8].status = checkSkipped
	}
	return checks
}

func judge(ok bool) string {
	if ok {
		return checkOK
	}
	return checkFailed
}

// unexpectedAnswers counts the definitive answers that no request should
// end with.
func unexpectedAnswers(answers map[string]int) int {
	var n int
	for label, count := range answers {
		if !expectedAnswers[label] {
			n += count
		}
	}
	return n
}

// write prints the figures, one a line, the reconcile report, and the
// invariants, and reports whether every invariant held.
func (r *result) write(w io.Writer) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(label string, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, fmt.Sprintf(format, args...))
	}
	load := r.load
	line("seed", "%d", r.seed)
	line("requests sent", "%d (with raise_error on the first attempt: %d; abandoned after it, left to the completer: %d)", load.sent, load.raised, load.abandoned)
	line("attempts", "%d (%s)", sum(load.attempts), formatCounts(load.attempts))
	line("answers by status", "%s", formatCounts(load.answers))
	line("clients that gave up", "%d (after %d attempts)", load.gaveUp, maxAttempts)
	line("requests cut off by the end of the run", "%d", load.interrupted)
	line("API kills (SIGKILL)", "%d (planned %d; the API died on its own %d times)", r.kills, r.killsPlanned, r.apiCrashes)
	line("PostgreSQL restart", "%s", r.postgres.describe())
	if r.unfinishedAfterSettle == 0 {
		line("settled", "in %s", r.settledIn.Round(100*time.Millisecond))
	} else {
		line("settled", "no: %d keys still unfinished after %s", r.unfinishedAfterSettle, r.settledIn.Round(100*time.Millisecond))
	}
	if report := r.report; report != nil {
		line("keys finished", "%d", report.KeysFinished)
		line("keys still unfinished", "%d", report.KeysUnfinished)
		line("rides", "%d", report.Rides)
		line("charges", "%d (succeeded %d, declined %d)", report.Charges, report.ChargesSucceeded, report.ChargesFailed)
		line("double charges", "%d", report.DoubleCharges.Count)
		line("rides without a charge", "%d", report.RidesUncharged())
		line("201 answers not matching their charged ride", "%d", r.answersUnmatched+load.sharedRides)
	}
	r.surges.write(line)
	_ = tw.Flush()

	if r.report != nil {
		fmt.Fprintln(w, "\nreconcile report:")
		_ = r.report.Write(w)
	}

	fmt.Fprintln(w, "\ninvariants:")
	passed := true
	for _, c := range append(r.checks(), r.surges.checks()...) {
		fmt.Fprintf(w, "%-7s %s\n", c.status, c.name)
		passed = passed && c.status != checkFailed
	}
	if r.err != nil {
		fmt.Fprintf(w, "\nchaos: error: %s\n", r.err)
	}
	verdict := "PASS"
	if !passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nchaos: %s\n", verdict)
	return passed
}

// describe says what became of the restart, on one line.
func (p *postgresRestart) describe() string {
	switch {
	case p.skipped != "":
		return "skipped: " + p.skipped
	case p.err != nil:
		return "failed: " + p.err.Error()
	case !p.done:
		return "not reached"
	case p.apiSurvived:
		return fmt.Sprintf("done in %s; the API, not restarted, was ready again %s later",
			p.took.Round(100*time.Millisecond), p.apiReadyAfter.Round(time.Millisecond))
	default:
		return fmt.Sprintf("done in %s; the API did not survive it", p.took.Round(100*time.Millisecond))
	}
}

func sum(counts map[string]int) int {
	var n int
	for _, count := range counts {
		n += count
	}
	return n
}

// formatCounts formats counts as "201: 3, 409 conflict: 1", by label.
func formatCounts(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(counts))
	for _, label := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s: %d", label, counts[label]))
	}
	return strings.Join(parts, ", ")
}
