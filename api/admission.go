package api

import (
	"context"
	"time"

	"github.com/labstack/echo/v4"
)

// Defaults of the admission bounds, measured on a 2-core machine with the
// default pool of 16 connections and the Stripe fake (see README, Load
// shedding): the API serves about 350 new rides a second with 32 running at
// once, each in under 0.1 s; more at once only lengthens the queue for
// connections.
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
	wait     time.Duration
	working  chan struct{}
}

func newAdmission(maxInFlight, maxWorking int, wait time.Duration) *admission {
	return &admission{inFlight: make(chan struct{}, maxInFlight), wait: wait, working: make(chan struct{}, maxWorking)}
}

// admit is the middleware of the routes that do work: a request that finds
// MaxInFlight requests in the server is turned away at once.
func (a *admission) admit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		select {
		case a.inFlight <- struct{}{}:
		default:
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
		return nil, errOverloaded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
