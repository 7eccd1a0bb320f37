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
	if len(s.Latencies) == 0 {
		return 0
	}
	rank := int(q*float64(len(s.Latencies))+0.5) - 1
	return s.Latencies[min(max(rank, 0), len(s.Latencies)-1)]
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
}

// Recorder collects the requests of one worker. Each worker has its own, so
// it needs no lock.
type Recorder struct {
	errors       int
	firstError   error
	latencies    []time.Duration
	statusCounts map[string]int
}

// Record records a request that started at start and was answered with
// status. A non-nil err means the answer was not the expected one.
func (r *Recorder) Record(start time.Time, status string, err error) {
	r.latencies = append(r.latencies, time.Since(start))
	r.statusCounts[status]++
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
		rec := &Recorder{statusCounts: make(map[string]int)}
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
	stats := &Stats{Elapsed: elapsed, StatusCounts: make(map[string]int)}
	for _, rec := range recorders {
		stats.Errors += rec.errors
		if stats.FirstError == nil {
			stats.FirstError = rec.firstError
		}
		stats.Latencies = append(stats.Latencies, rec.latencies...)
		for status, n := range rec.statusCounts {
			stats.StatusCounts[status] += n
		}
	}
	slices.Sort(stats.Latencies)
	return stats
}
