package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one iteration of a worker: one request, or a few requests that
// belong together (a failure and its retry). It times each request and
// records it with rec. iteration counts the worker's own iterations from 0.
type Op func(ctx context.Context, worker, iteration int, rec *Recorder)

// LoadConfig bounds a run of the load generator in concurrency, time and
// iterations.
type LoadConfig struct {
	// Concurrency is how many workers run Op at once, each in a loop.
	Concurrency int

	// Duration is how long workers start new iterations. Iterations under
	// way when it ends are waited for.
	Duration time.Duration

	// MaxIterations caps the iterations started by all workers together.
	// Zero means no cap other than Duration.
	MaxIterations int
}

// Stats are what a run measured.
type Stats struct {
	// Elapsed runs from the start to the end of the last iteration.
	Elapsed time.Duration

	// Errors counts requests whose answer was not the one the scenario
	// expects; FirstError describes the first of them.
	Errors     int
	FirstError error

	// Latencies holds every request's latency, sorted.
	Latencies []time.Duration

	// StatusCounts counts requests by status: an HTTP status code, or "ok"
	// and "error" for the limit, which speaks no HTTP.
	StatusCounts map[string]int

	// StatusLatencies holds the latencies of each status's requests,
	// sorted.
	StatusLatencies map[string][]time.Duration
}

// Requests is how many requests the run made.
func (s *Stats) Requests() int {
	return len(s.Latencies)
}

// RPS is requests answered as expected per second over the run: a 409
// is no throughput.
func (s *Stats) RPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests()-s.Errors) / s.Elapsed.Seconds()
}

// Percentile returns the latency under which a fraction q of the requests
// completed (nearest rank), or 0 without requests.
func (s *Stats) Percentile(q float64) time.Duration {
	return percentile(s.Latencies, q)
}

// StatusPercentile is Percentile of the requests answered with status.
func (s *Stats) StatusPercentile(status string, q float64) time.Duration {
	return percentile(s.StatusLatencies[status], q)
}

// percentile returns the latency under which a fraction q of the sorted
// latencies lie (nearest rank), or 0 without latencies.
func percentile(latencies []time.Duration, q float64) time.Duration {
	if len(latencies) == 0 {
		return 0
	}
	rank := int(q*float64(len(latencies))+0.5) - 1
	return latencies[min(max(rank, 0), len(latencies)-1)]
}

// add adds the requests of another run.
func (s *Stats) add(other *Stats) {
	s.Elapsed += other.Elapsed
	s.Errors += other.Errors
	if s.FirstError == nil {
		s.FirstError = other.FirstError
	}
	s.Latencies = append(s.Latencies, other.Latencies...)
	slices.Sort(s.Latencies)
	for status, n := range other.StatusCounts {
		s.StatusCounts[status] += n
	}
	for status, latencies := range other.StatusLatencies {
		s.StatusLatencies[status] = append(s.StatusLatencies[status], latencies...)
		slices.Sort(s.StatusLatencies[status])
	}
}

// newStats returns empty Stats.
func newStats() *Stats {
	return &Stats{StatusCounts: make(map[string]int), StatusLatencies: make(map[string][]time.Duration)}
}

// Recorder collects the requests of one worker. Each worker has its own, so
// it needs no lock.
type Recorder struct {
	errors          int
	firstError      error
	latencies       []time.Duration
	statusLatencies map[string][]time.Duration
}

// Record records a request that started at start and was answered with
// status. A non-nil err means the answer was not the expected one.
func (r *Recorder) Record(start time.Time, status string, err error) {
	latency := time.Since(start)
	r.latencies = append(r.latencies, latency)
	r.statusLatencies[status] = append(r.statusLatencies[status], latency)
	if err != nil {
		r.errors++
		if r.firstError == nil {
			r.firstError = err
		}
	}
}

// RunLoad runs op on cfg.Concurrency workers until cfg.Duration has passed,
// cfg.MaxIterations iterations have started or ctx is done, then waits for
// the iterations under way and returns what they measured.
func RunLoad(ctx context.Context, cfg LoadConfig, op Op) *Stats {
	var (
		started   atomic.Int64
		wg        sync.WaitGroup
		recorders = make([]*Recorder, cfg.Concurrency)
	)
	begin := time.Now()
	deadline := begin.Add(cfg.Duration)
	mayStart := func() bool {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		return cfg.MaxIterations == 0 || started.Add(1) <= int64(cfg.MaxIterations)
	}
	for worker := range cfg.Concurrency {
		rec := &Recorder{statusLatencies: make(map[string][]time.Duration)}
		recorders[worker] = rec
		wg.Go(func() {
			for iteration := 0; mayStart(); iteration++ {
				op(ctx, worker, iteration, rec)
			}
		})
	}
	wg.Wait()
	return merge(recorders, time.Since(begin))
}

// merge combines the workers' recorders into the run's Stats.
func merge(recorders []*Recorder, elapsed time.Duration) *Stats {
	stats := newStats()
	stats.Elapsed = elapsed
	for _, rec := range recorders {
		stats.Errors += rec.errors
		if stats.FirstError == nil {
			stats.FirstError = rec.firstError
		}
		stats.Latencies = append(stats.Latencies, rec.latencies...)
		for status, latencies := range rec.statusLatencies {
			stats.StatusCounts[status] += len(latencies)
			stats.StatusLatencies[status] = append(stats.StatusLatencies[status], latencies...)
		}
	}
	slices.Sort(stats.Latencies)
	for _, latencies := range stats.StatusLatencies {
		slices.Sort(latencies)
	}
	return stats
}
