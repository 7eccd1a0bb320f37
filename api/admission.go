package api

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/rocketrides/rocketrides/metrics"
)

// Defaults of the admission bounds, measured on this project's 2-core
// machine (shared, load average 10 to 20) with the default pool of 16
// connections and the Stripe fake: 32 requests at once already keep the pool
// busy (150 to 210 new rides a second), and more only lengthen the queue
// for connections. With 256 admitted at c=1,024, the requests past the
// working bound each read the database before being turned away, and
// goodput fell to a third of c=32's; with 64, it stayed at 74 to 95 %.
const (
	// MaxInFlightDefault is the most POST /rides requests in the server at
	// once, replays included.
	MaxInFlightDefault = 64

	// MaxWorkingDefault is the most requests that run the workflow at once
	// (everything but a replay of a finished key).
	MaxWorkingDefault = 32

	// AdmissionWaitDefault is how long a request waits for one of the
	// MaxWorking places before it is turned away.
	AdmissionWaitDefault = 50 * time.Millisecond
)

// admission sheds load before it is queued: a request beyond the bounds is
// answered 503 overloaded at once, before it writes anything, so its retry
// is always safe. Replays of finished keys count only against the bound on
// requests in flight, so they are the last to be shed.
type admission struct {
	inFlight chan struct{}
	lastSeen atomic.Int64     // when a request last came (Unix ns), admitted or not; 0 since the last release of memory
	metrics  *metrics.Metrics // nil records nothing
	wait     time.Duration
	working  chan struct{}
}

func newAdmission(maxInFlight, maxWorking int, wait time.Duration, m *metrics.Metrics) *admission {
	return &admission{inFlight: make(chan struct{}, maxInFlight), metrics: m, wait: wait, working: make(chan struct{}, maxWorking)}
}

// shed records a request turned away at the working bound, or at the bound
// on requests in flight.
func (a *admission) shed(working bool) {
	if a.metrics != nil {
		a.metrics.ObserveShed(working)
	}
}

// admit is the middleware of the routes that do work: a request that finds
// MaxInFlight requests in the server is turned away at once.
func (a *admission) admit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		a.lastSeen.Store(time.Now().UnixNano())
		select {
		case a.inFlight <- struct{}{}:
		default:
			a.shed(false)
			return errOverloaded
		}
		defer func() { <-a.inFlight }()
		return next(c)
	}
}

// work takes one of the MaxWorking places, waiting up to AdmissionWait for
// one, and returns its release; errOverloaded if none came free.
func (a *admission) work(ctx context.Context) (release func(), err error) {
	select {
	case a.working <- struct{}{}:
		return func() { <-a.working }, nil
	default:
	}
	timer := time.NewTimer(a.wait)
	defer timer.Stop()
	select {
	case a.working <- struct{}{}:
		return func() { <-a.working }, nil
	case <-timer.C:
		a.shed(true)
		return nil, errOverloaded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// memoryCheckInterval is how often the server looks whether a busy period
// has passed.
const memoryCheckInterval = 10 * time.Second

// releaseMemoryWhenIdle returns to the operating system, once a busy period
// has passed, the memory its connections and goroutines took, until ctx is
// done. A busy period (an overload or any other traffic) has passed when no
// request is in flight and none came for quiet (the server's idle timeout):
// by then the connections its clients left open idle are closed, and what
// they held is garbage. Go's runtime would keep that memory until its next
// collection, which an idle server may not run for minutes.
func (a *admission) releaseMemoryWhenIdle(ctx context.Context, quiet time.Duration) {
	ticker := time.NewTicker(memoryCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		last := a.lastSeen.Load()
		if last == 0 || len(a.inFlight) > 0 || time.Since(time.Unix(0, last)) < quiet {
			continue
		}
		if a.lastSeen.CompareAndSwap(last, 0) {
			// Two collections: what the closed connections held sits in
			// sync.Pools (net/http's bufio readers and writers, Echo's
			// contexts), which a collection only moves to their victim
			// caches, and the next one frees.
			runtime.GC()
			debug.FreeOSMemory()
		}
	}
}
