package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The targets.
const (
	// newKeysRatioMin is the least share of the limit that new keys must
	// reach at newKeysTargetConcurrency.
	newKeysRatioMin          = 0.8
	newKeysTargetConcurrency = 32

	// replaysRatioMin is the least share of the limit that replays must
	// reach, at every concurrency.
	replaysRatioMin = 0.5

	// newKeyTxMax is the most transactions a new key may take, and
	// replayRoundTripsMax the most round trips a replay may take.
	newKeyTxMax         = 2
	replayRoundTripsMax = 1

	// stripeShareMin is the least share of the Stripe-bound ceiling
	// (concurrency / Stripe's latency) that the API must reach with a slow
	// Stripe, for its throughput to count as bounded by Stripe.
	stripeShareMin = 0.8
)

// Target is one of the targets and whether the run met it.
type Target struct {
	// Failed are the cells that failed it; their profiles are kept.
	Failed []*Row

	Holds    bool
	Measured string
	Name     string

	// Skipped is set when none of the target's scenarios ran.
	Skipped bool
}

// newTarget returns a target judged on rows: it holds until a row fails
// it, and is skipped without rows.
func newTarget(name string, rows []*Row) *Target {
	return &Target{Holds: len(rows) > 0, Name: name, Skipped: len(rows) == 0}
}

// evaluate judges every target on rows.
func evaluate(rows []*Row) []*Target {
	return []*Target{
		ratioTarget(fmt.Sprintf("new keys at concurrency %d >= %.1f of the limit", newKeysTargetConcurrency, newKeysRatioMin),
			selectRows(rows, func(r *Row) bool {
				return r.Scenario == scenarioNewKeys && r.Concurrency == newKeysTargetConcurrency
			}), newKeysRatioMin),
		ratioTarget(fmt.Sprintf("replays >= %.1f of the limit, at every concurrency", replaysRatioMin),
			selectRows(rows, byScenario(scenarioReplays)), replaysRatioMin),
		perRequestTarget(fmt.Sprintf("<= %d transactions for a new key", newKeyTxMax),
			selectRows(rows, byScenario(scenarioNewKeys)), func(r *Row) float64 { return r.TxPerRequest }, newKeyTxMax),
		perRequestTarget(fmt.Sprintf("%d round trip for a replay, user lookup included", replayRoundTripsMax),
			selectRows(rows, byScenario(scenarioReplays)), func(r *Row) float64 { return r.DBRoundTripsPerRequest }, replayRoundTripsMax),
		distinctKeysTarget(selectRows(rows, byScenario(scenarioNewKeys, scenarioNewKeysSerializable, scenarioStripeLatency))),
		poolSizeTarget(selectRows(rows, byScenario(scenarioStripeLatency))),
		noConnDuringStripeTarget(rows),
		stripeBoundTarget(selectRows(rows, byScenario(scenarioStripeLatency))),
	}
}

// ratioTarget holds if the API reaches min of the limit in every row.
func ratioTarget(name string, rows []*Row, min float64) *Target {
	t := newTarget(name, rows)
	var measured []string
	for _, r := range rows {
		measured = append(measured, fmt.Sprintf("%.2f at c=%d", r.Ratio, r.Concurrency))
		if r.Ratio < min {
			t.Holds = false
			t.Failed = append(t.Failed, r)
		}
	}
	t.Measured = strings.Join(measured, ", ")
	return t
}

// perRequestTarget holds if figure stays at or under max in every row.
func perRequestTarget(name string, rows []*Row, figure func(*Row) float64, max float64) *Target {
	t := newTarget(name, rows)
	var measured []string
	for _, r := range rows {
		measured = append(measured, fmt.Sprintf("%.2f at c=%d", figure(r), r.Concurrency))
		if figure(r) > max {
			t.Holds = false
			t.Failed = append(t.Failed, r)
		}
	}
	t.Measured = strings.Join(measured, ", ")
	return t
}

// distinctKeysTarget holds if no request with a distinct key got a 409, a
// 5xx or no answer.
func distinctKeysTarget(rows []*Row) *Target {
	t := newTarget("no 409 or 5xx for distinct keys, at any concurrency and both isolation levels", rows)
	var measured []string
	for _, r := range rows {
		bad := 0
		for status, n := range r.StatusCounts {
			code, err := strconv.Atoi(status)
			if err != nil || code == 409 || code >= 500 {
				bad += n
			}
		}
		if bad > 0 {
			t.Holds = false
			t.Failed = append(t.Failed, r)
			measured = append(measured, fmt.Sprintf("%s c=%d: %s", r.Scenario, r.Concurrency, statusSummary(r.StatusCounts)))
		}
	}
	t.Measured = "none"
	if len(measured) > 0 {
		t.Measured = strings.Join(measured, "; ")
	}
	return t
}

// poolSizeTarget holds if, with a slow Stripe, the connections in use never
// exceeded the pool's size.
func poolSizeTarget(rows []*Row) *Target {
	t := newTarget("slow Stripe: DB connections in use never exceed the pool's size", rows)
	var measured []string
	for _, r := range rows {
		measured = append(measured, fmt.Sprintf("peak %d of %d at c=%d", r.MaxDBConns, r.PoolMaxConns, r.Concurrency))
		if r.MaxDBConns > r.PoolMaxConns {
			t.Holds = false
			t.Failed = append(t.Failed, r)
		}
	}
	t.Measured = strings.Join(measured, ", ")
	return t
}

// noConnDuringStripeTarget holds if no Stripe call came while its request
// held a database connection, in any cell, on either side.
func noConnDuringStripeTarget(rows []*Row) *Target {
	t := newTarget("no connection held during a Stripe call (every scenario, 50 ms Stripe included)", rows)
	var calls, holding int64
	for _, r := range rows {
		calls += int64(r.StripeCharges)
		holding += r.StripeCallsHoldingDBConn
		if r.StripeCallsHoldingDBConn > 0 {
			t.Holds = false
			t.Failed = append(t.Failed, r)
		}
	}
	t.Measured = fmt.Sprintf("%d of %d API charges came while their request held a connection", holding, calls)
	return t
}

// stripeBoundTarget holds if, with a slow Stripe, the API reaches
// stripeShareMin of concurrency / latency while the pool never ran out of
// connections (a request that waits for one is bounded by the pool).
func stripeBoundTarget(rows []*Row) *Target {
	t := newTarget(fmt.Sprintf("slow Stripe: throughput bounded by Stripe's latency (>= %.1f of concurrency/latency), not by the pool", stripeShareMin), rows)
	var measured []string
	for _, r := range rows {
		ceiling := float64(r.Concurrency) / (r.StripeLatencyMS / 1000)
		measured = append(measured, fmt.Sprintf("%.0f rps of a %.0f ceiling (%.2f; limit %.0f rps), pool peak %d of %d, p50 %.1f ms",
			r.APIRPS, ceiling, r.APIRPS/ceiling, r.LimitRPS, r.MaxDBConns, r.PoolMaxConns, r.P50MS))
		if r.APIRPS < stripeShareMin*ceiling || r.MaxDBConns >= r.PoolMaxConns {
			t.Holds = false
			t.Failed = append(t.Failed, r)
		}
	}
	t.Measured = strings.Join(measured, ", ")
	return t
}

// writeTargets writes each target, whether it holds and what was measured.
// A target whose scenarios did not run is skipped.
func writeTargets(w io.Writer, targets []*Target) error {
	for _, t := range targets {
		verdict := "HOLDS"
		switch {
		case t.Skipped:
			verdict = "SKIP"
		case !t.Holds:
			verdict = "FAILS"
		}
		if _, err := fmt.Fprintf(w, "%-5s  %s: %s\n", verdict, t.Name, t.Measured); err != nil {
			return fmt.Errorf("writing targets: %w", err)
		}
	}
	return nil
}

// failedRows are the cells that failed a target, whose profiles are kept.
func failedRows(targets []*Target) map[*Row]bool {
	failed := make(map[*Row]bool)
	for _, t := range targets {
		for _, r := range t.Failed {
			failed[r] = true
		}
	}
	return failed
}

// selectRows returns the rows that match, in order.
func selectRows(rows []*Row, match func(*Row) bool) []*Row {
	var selected []*Row
	for _, r := range rows {
		if match(r) {
			selected = append(selected, r)
		}
	}
	return selected
}

func byScenario(names ...string) func(*Row) bool {
	return func(r *Row) bool { return slices.Contains(names, r.Scenario) }
}
