package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The targets of issue 11 (goals 1 and 3) and issue 13 (goal 4). Each is a
// figure of the issue, not of the code it judges.
const (
	// ratioMin is the least share of its limit that new keys (at
	// newKeysRatioConcurrencies), cancels and replays must reach.
	ratioMin = 0.8

	// newKeysP99MaxMS is the most p99 of new keys at
	// newKeysTargetConcurrency, in milliseconds.
	newKeysP99MaxMS          = 100
	newKeysTargetConcurrency = 32

	// newKeyCPUMaxMS is the most CPU time of the API's process per new key
	// at newKeysTargetConcurrency, in milliseconds.
	newKeyCPUMaxMS = 0.6

	// newKeyRoundTripsMax and replayRoundTripsMax are the most round trips
	// of a new key (at read committed) and of a replay.
	newKeyRoundTripsMax = 3
	replayRoundTripsMax = 1

	// cancelRoundTripsMax is the most round trips of a cancel: the user and
	// key read, then its two phases (the claim; the refund's record) of at
	// most two each.
	cancelRoundTripsMax = 1 + 2*2

	// overloadGoodputMin is the least share of the goodput with few
	// clients that the API must keep under overload; overloadP99MaxMS the
	// most p99 of its admitted requests; overloadRSSTolerance how far above
	// idle (at rest after the few clients' load) its RSS may stay after the
	// overload.
	overloadGoodputMin   = 0.9
	overloadP99MaxMS     = 1000
	overloadRSSTolerance = 0.2
)

// newKeysRatioConcurrencies are where new keys must reach ratioMin.
var newKeysRatioConcurrencies = []int{8, 32}

// Target is one of the issues' targets and whether the run met it.
type Target struct {
	Name     string `json:"name"`
	Holds    bool   `json:"holds"`
	Measured string `json:"measured"`

	// Skipped is set when none of the target's scenarios ran.
	Skipped bool `json:"skipped,omitempty"`
}

// rowTarget judges a figure of each of rows against a bound: ok says
// whether the row's figure meets it.
func rowTarget(name string, rows []*Row, format string, figure func(*Row) float64, ok func(float64) bool) *Target {
	t := &Target{Name: name, Holds: len(rows) > 0, Skipped: len(rows) == 0}
	var measured []string
	for _, r := range rows {
		value := figure(r)
		measured = append(measured, fmt.Sprintf(format+" at %s c=%d", value, r.Scenario, r.Concurrency))
		if !ok(value) {
			t.Holds = false
		}
	}
	t.Measured = strings.Join(measured, ", ")
	return t
}

// evaluate judges every target on results.
func evaluate(results *Results) []*Target {
	cells := results.Cells
	newKeysAt := func(concurrencies ...int) []*Row {
		return selectRows(cells, func(r *Row) bool {
			return r.Scenario == scenarioNewKeys && slices.Contains(concurrencies, r.Concurrency)
		})
	}
	atLeast := func(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
	atMost := func(max float64) func(float64) bool { return func(v float64) bool { return v <= max } }
	ratio := func(r *Row) float64 { return r.Ratio }
	targets := []*Target{
		rowTarget(fmt.Sprintf("new keys >= %.1f of the limit at c=8 and c=32", ratioMin),
			newKeysAt(newKeysRatioConcurrencies...), "%.2f", ratio, atLeast(ratioMin)),
		rowTarget(fmt.Sprintf("cancels >= %.1f of the limit", ratioMin),
			selectRows(cells, byScenario(scenarioCancels)), "%.2f", ratio, atLeast(ratioMin)),
		rowTarget(fmt.Sprintf("replays >= %.1f of the bare-handler limit", ratioMin),
			selectRows(cells, byScenario(scenarioReplays)), "%.2f", ratio, atLeast(ratioMin)),
		rowTarget(fmt.Sprintf("new keys p99 at c=%d < %d ms", newKeysTargetConcurrency, newKeysP99MaxMS),
			newKeysAt(newKeysTargetConcurrency), "%.1f ms", func(r *Row) float64 { return r.API.P99MS },
			func(v float64) bool { return v < newKeysP99MaxMS }),
		cpuTarget(newKeysAt(newKeysTargetConcurrency), atMost(newKeyCPUMaxMS)),
		rowTarget(fmt.Sprintf("new key <= %d round trips (read committed)", newKeyRoundTripsMax),
			selectRows(cells, byScenario(scenarioNewKeys)), "%.2f", func(r *Row) float64 { return r.API.RoundTripsPerRequest },
			atMost(newKeyRoundTripsMax)),
		rowTarget(fmt.Sprintf("cancel <= %d round trips (read, two phases of <= 2)", cancelRoundTripsMax),
			selectRows(cells, byScenario(scenarioCancels)), "%.2f", func(r *Row) float64 { return r.API.RoundTripsPerRequest },
			atMost(cancelRoundTripsMax)),
		rowTarget(fmt.Sprintf("replay %d round trip", replayRoundTripsMax),
			selectRows(cells, byScenario(scenarioReplays)), "%.2f", func(r *Row) float64 { return r.API.RoundTripsPerRequest },
			atMost(replayRoundTripsMax)),
		distinctKeysTarget(selectRows(cells, byScenario(scenarioNewKeys, scenarioNewKeysSerializable, scenarioCancels))),
		peerTarget(selectRows(cells, func(r *Row) bool { return r.Peer != nil })),
	}
	return append(targets, overloadTargets(results.Overload)...)
}

// cpuTarget judges the API's CPU per new key on rows, and shows the bare
// handler's beside it where it ran: the floor under the same load.
func cpuTarget(rows []*Row, ok func(float64) bool) *Target {
	t := rowTarget(fmt.Sprintf("API CPU per new key at c=%d <= %.1f ms", newKeysTargetConcurrency, newKeyCPUMaxMS),
		rows, "%.3f ms", func(r *Row) float64 { return r.API.ProcessCPUMSPerRequest }, ok)
	for _, r := range rows {
		if r.Bare != nil {
			t.Measured += fmt.Sprintf(" (bare handler %.3f ms)", r.Bare.ProcessCPUMSPerRequest)
		}
	}
	return t
}

// distinctKeysTarget holds if no request with a distinct key got a 409, a
// 5xx or no answer from the API.
func distinctKeysTarget(rows []*Row) *Target {
	t := &Target{Name: "no 409 or 5xx on distinct keys, at either isolation level", Holds: len(rows) > 0, Skipped: len(rows) == 0}
	var measured []string
	for _, r := range rows {
		bad := 0
		for status, n := range r.API.StatusCounts {
			code, err := strconv.Atoi(status)
			if err != nil || code == 409 || code >= 500 {
				bad += n
			}
		}
		if bad > 0 {
			t.Holds = false
			measured = append(measured, fmt.Sprintf("%s c=%d: %s", r.Scenario, r.Concurrency, statusSummary(r.API.StatusCounts)))
		}
	}
	t.Measured = "none"
	if len(measured) > 0 {
		t.Measured = strings.Join(measured, "; ")
	}
	return t
}

// peerTarget holds if the API is ahead of the peer in every cell where the
// peer ran (issue 11, goal 4).
func peerTarget(rows []*Row) *Target {
	return rowTarget("API ahead of the peer (API rps / peer rps > 1)", rows, "%.2f", func(r *Row) float64 {
		if r.PeerRPS == 0 {
			return math.Inf(1) // the peer answered nothing as expected
		}
		return r.APIRPS / r.PeerRPS
	}, func(v float64) bool { return v > 1 })
}

// overloadTargets judges the overload scenario, skipped if it did not run.
func overloadTargets(o *OverloadResult) []*Target {
	names := []string{
		fmt.Sprintf("overload: goodput with many clients honoring Retry-After >= %.1f of the goodput with few", overloadGoodputMin),
		fmt.Sprintf("overload: p99 of admitted requests < %d ms", overloadP99MaxMS),
		"overload: every answer a 201, or a 503 overloaded with Retry-After",
		fmt.Sprintf("overload: RSS after the load within %.0f%% of idle", overloadRSSTolerance*100),
	}
	if o == nil {
		targets := make([]*Target, len(names))
		for i, name := range names {
			targets[i] = &Target{Name: name, Skipped: true}
		}
		return targets
	}
	goodput := 0.0
	if o.Base.GoodputRPS > 0 {
		goodput = o.Overload.GoodputRPS / o.Base.GoodputRPS
	}
	other5xx := 0
	for _, load := range []OverloadLoad{o.Base, o.Overload, o.Hammer} {
		for status, n := range load.StatusCounts {
			if status != statusShed && status != "201" {
				other5xx += n
			}
		}
	}
	rssDrift := 0.0
	if o.IdleRSSMB > 0 {
		rssDrift = o.SettledRSSMB/o.IdleRSSMB - 1
	}
	return []*Target{
		{Name: names[0], Holds: goodput >= overloadGoodputMin,
			Measured: fmt.Sprintf("%.2f (%.0f/s at c=%d, %.0f/s at c=%d)", goodput, o.Overload.GoodputRPS, o.Overload.Clients, o.Base.GoodputRPS, o.Base.Clients)},
		{Name: names[1], Holds: o.Overload.AdmittedP99MS < overloadP99MaxMS && o.Base.AdmittedP99MS < overloadP99MaxMS,
			Measured: fmt.Sprintf("%.1f ms at c=%d, %.1f ms at c=%d", o.Overload.AdmittedP99MS, o.Overload.Clients, o.Base.AdmittedP99MS, o.Base.Clients)},
		{Name: names[2], Holds: o.Overload.ShedWithoutRetryAfter+o.Base.ShedWithoutRetryAfter+o.Hammer.ShedWithoutRetryAfter == 0 && other5xx == 0,
			Measured: fmt.Sprintf("%d shed without Retry-After, %d other answers than 201 and 503 overloaded",
				o.Overload.ShedWithoutRetryAfter+o.Base.ShedWithoutRetryAfter+o.Hammer.ShedWithoutRetryAfter, other5xx)},
		{Name: names[3], Holds: rssDrift <= overloadRSSTolerance,
			Measured: fmt.Sprintf("%+.0f%% (idle after the few clients %.1f MiB, after the overload %.1f MiB, peak %.1f MiB, before any request %.1f MiB)",
				rssDrift*100, o.IdleRSSMB, o.SettledRSSMB, o.PeakRSSMB, o.ColdRSSMB)},
	}
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
