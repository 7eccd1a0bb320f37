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
	cancelsUnmatched      int  // 200 cancel answers whose ride is not cancelled with the refund they named
	completerExited       bool
	err                   error // the run could not go on
	kills                 int
	killsPlanned          int
	live                  *liveReconcile // the runs of reconcile during the load
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
		{"every retrying client got an expected definitive answer", judge(r.load.gaveUp == 0 && r.load.interrupted == 0 && unexpectedAnswers(r.load.answers, expectedAnswers) == 0)},
		{"the API was killed as often as planned", judge(r.kills >= r.killsPlanned)},
		{"the API survived PostgreSQL's restart without being restarted", judge(restart.apiSurvived)},
		{"no process died on its own", judge(r.apiCrashes == 0 && !r.apiExited && !r.completerExited && !r.stripeFakeExited)},
		{"no ride refunded twice", judge(reconciled && report.ChargesRefundedTwice.Count == 0)},
		{"every cancelled ride has exactly one full refund, and no refund is without one", judge(reconciled &&
			report.CancelledRideRefundsMissing.Count == 0 && report.CancelledRideRefundsDiffering.Count == 0 &&
			report.RefundsWithoutCancellation.Count == 0 && report.RidesCancellationClaimed == 0)},
		{"every 200 cancel names its own ride, cancelled with its refund", judge(reconciled && r.cancelsUnmatched == 0 && r.load.cancels.sharedRides == 0)},
		{"every cancelling client got an expected definitive answer", judge(r.load.cancels.gaveUp == 0 && r.load.cancels.interrupted == 0 &&
			unexpectedAnswers(r.load.cancels.answers, expectedCancelAnswers) == 0)},
		{"reconcile during the load never reported a difference", judge(r.live != nil && r.live.runs > 0 && r.live.differing == 0)},
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

// unexpectedAnswers counts the definitive answers that are not expected.
func unexpectedAnswers(answers map[string]int, expected map[string]bool) int {
	var n int
	for label, count := range answers {
		if !expected[label] {
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
	cancels := load.cancels
	line("cancels sent", "%d (of %d rides created; abandoned after a first attempt that was not definitive, left to the completer: %d)",
		cancels.sent, load.answers["201"], cancels.abandoned)
	line("cancel attempts", "%d (%s)", sum(cancels.attempts), formatCounts(cancels.attempts))
	line("cancel answers by status", "%s", formatCounts(cancels.answers))
	line("cancelling clients that gave up", "%d (after %d attempts; cut off by the end of the run: %d)", cancels.gaveUp, maxAttempts, cancels.interrupted)
	if r.live != nil {
		line("reconcile during the load", "%s", r.live.describe())
	}
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
		line("rides cancelled", "%d (claims left: %d)", report.RidesCancelled, report.RidesCancellationClaimed)
		line("refunds", "%d (charges refunded twice: %d)", report.Refunds, report.ChargesRefundedTwice.Count)
		line("200 cancel answers not matching their cancelled ride", "%d", r.cancelsUnmatched+cancels.sharedRides)
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
	if r.live != nil && r.live.firstDifference != "" {
		fmt.Fprintf(w, "\nthe first difference reconcile reported during the load:\n%s\n", r.live.firstDifference)
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
