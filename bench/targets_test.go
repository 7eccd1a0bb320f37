package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// targetByName returns the target named name.
func targetByName(t *testing.T, targets []*Target, name string) *Target {
	t.Helper()
	for _, target := range targets {
		if target.Name == name {
			return target
		}
	}
	require.FailNow(t, "no target "+name)
	return nil
}

func TestEvaluateJudgesEachTargetOnItsCells(t *testing.T) {
	t.Parallel()
	newKey := func(concurrency int, ratio float64, statuses map[string]int) *Row {
		return &Row{Scenario: scenarioNewKeys, Concurrency: concurrency, Ratio: ratio, APIRPS: 100, PeerRPS: 120, Peer: &Figures{},
			API: Figures{P99MS: 80, ProcessCPUMSPerRequest: 0.5, RoundTripsPerRequest: 3, StatusCounts: statuses}}
	}
	withBare := newKey(32, 0.7, map[string]int{"201": 10, "409": 1})
	withBare.Bare = &Figures{ProcessCPUMSPerRequest: 0.45}
	results := &Results{Cells: []*Row{
		newKey(1, 0.5, map[string]int{"201": 10}), // below the ratio, at a concurrency the target does not judge
		newKey(8, 0.9, map[string]int{"201": 10}),
		withBare,
		{Scenario: scenarioReplays, Concurrency: 8, Ratio: 0.85, API: Figures{RoundTripsPerRequest: 1}},
	}}

	targets := evaluate(results)

	ratio := targetByName(t, targets, "new keys >= 0.8 of the limit at c=8 and c=32")
	require.False(t, ratio.Holds)
	require.Equal(t, "0.90 at new_keys c=8, 0.70 at new_keys c=32", ratio.Measured)
	require.True(t, targetByName(t, targets, "replays >= 0.8 of the bare-handler limit").Holds)
	require.True(t, targetByName(t, targets, "cancels >= 0.8 of the limit").Skipped)
	require.True(t, targetByName(t, targets, "new keys p99 at c=32 < 100 ms").Holds)
	cpu := targetByName(t, targets, "API CPU per new key at c=32 <= 0.6 ms")
	require.True(t, cpu.Holds)
	require.Equal(t, "0.500 ms at new_keys c=32 (bare handler 0.450 ms)", cpu.Measured)
	require.True(t, targetByName(t, targets, "new key <= 3 round trips (read committed)").Holds)
	distinct := targetByName(t, targets, "no 409 or 5xx on distinct keys, at either isolation level")
	require.False(t, distinct.Holds)
	require.Equal(t, "new_keys c=32: 201:10 409:1", distinct.Measured)
	require.False(t, targetByName(t, targets, "API ahead of the peer (API rps / peer rps > 1)").Holds)
	require.True(t, targetByName(t, targets, "overload: p99 of admitted requests < 1000 ms").Skipped)
}

func TestOverloadTargets(t *testing.T) {
	t.Parallel()
	o := &OverloadResult{
		Base:      OverloadLoad{Clients: 32, GoodputRPS: 400, AdmittedP99MS: 100, StatusCounts: map[string]int{"201": 1200}},
		Overload:  OverloadLoad{Clients: 1024, GoodputRPS: 370, AdmittedP99MS: 900, Shed: 50, StatusCounts: map[string]int{"201": 1100, statusShed: 50}},
		Hammer:    OverloadLoad{Clients: 1024, GoodputRPS: 100, AdmittedP99MS: 2000, Shed: 50, ShedWithoutRetryAfter: 1, StatusCounts: map[string]int{"201": 300, statusShed: 50, statusOther503: 2}},
		ColdRSSMB: 15, IdleRSSMB: 20, SettledRSSMB: 25, PeakRSSMB: 80,
	}

	targets := overloadTargets(o)

	require.Len(t, targets, 4)
	require.True(t, targets[0].Holds, targets[0].Measured)  // 370/400 = 0.925; the hammer is not judged
	require.True(t, targets[1].Holds, targets[1].Measured)  // 900 ms; the hammer's 2 s is not judged
	require.False(t, targets[2].Holds, targets[2].Measured) // the hammer's answers are
	require.Equal(t, "1 shed without Retry-After, 2 other answers than 201 and 503 overloaded", targets[2].Measured)
	require.False(t, targets[3].Holds, targets[3].Measured) // 25 MiB is 25% above 20
}

func TestProblemType(t *testing.T) {
	t.Parallel()
	require.Equal(t, "overloaded", problemType([]byte(`{"type": "https://github.com/rocketrides/rocketrides#problem-overloaded", "status": 503}`)))
	require.Empty(t, problemType([]byte(`{"type": "about:blank"}`)))
	require.Empty(t, problemType([]byte(`not json`)))
}
