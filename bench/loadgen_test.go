package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRunLoadStopsAtMaxIterations(t *testing.T) {
	t.Parallel()

	var calls atomic.Int64
	stats := RunLoad(t.Context(), LoadConfig{Concurrency: 4, Duration: time.Minute, MaxIterations: 10},
		func(_ context.Context, _, _ int, rec *Recorder) {
			start := time.Now()
			if calls.Add(1) == 1 {
				rec.Record(start, "500", errors.New("unexpected"))
				return
			}
			rec.Record(start, "201", nil)
		})

	require.EqualValues(t, 10, calls.Load())
	require.Equal(t, 10, stats.Requests())
	require.Equal(t, map[string]int{"201": 9, "500": 1}, stats.StatusCounts)
	require.Len(t, stats.StatusLatencies["201"], 9)
	require.Len(t, stats.StatusLatencies["500"], 1)
	require.Equal(t, stats.StatusLatencies["500"][0], stats.StatusPercentile("500", 0.99))
	require.Equal(t, 1, stats.Errors)
	require.EqualError(t, stats.FirstError, "unexpected")
}

func TestRunLoadStopsAtDuration(t *testing.T) {
	t.Parallel()

	stats := RunLoad(t.Context(), LoadConfig{Concurrency: 2, Duration: 50 * time.Millisecond},
		func(_ context.Context, _, _ int, rec *Recorder) {
			start := time.Now()
			<-time.After(time.Millisecond)
			rec.Record(start, "ok", nil)
		})

	require.Positive(t, stats.Requests())
	require.GreaterOrEqual(t, stats.Elapsed, 50*time.Millisecond)
}

func TestStatsPercentileIsNearestRank(t *testing.T) {
	t.Parallel()

	stats := &Stats{}
	for i := 1; i <= 100; i++ {
		stats.Latencies = append(stats.Latencies, time.Duration(i)*time.Millisecond)
	}

	require.Equal(t, 50*time.Millisecond, stats.Percentile(0.50))
	require.Equal(t, 90*time.Millisecond, stats.Percentile(0.90))
	require.Equal(t, 99*time.Millisecond, stats.Percentile(0.99))
	require.Zero(t, (&Stats{}).Percentile(0.5))
}
