package stripefake

import (
	"math/rand/v2"
	"sync"
)

// fault is the failure, if any, injected into one charge or refund
// creation.
type fault int

const (
	noFault fault = iota
	// failBefore answers 500 before anything is recorded.
	failBefore
	// failAfter records the charge or refund, then answers 500 as if the response
	// had been lost on its way back.
	failAfter
)

func (f fault) String() string {
	switch f {
	case failBefore:
		return "fail_before"
	case failAfter:
		return "fail_after"
	default:
		return "none"
	}
}

// faultInjector draws faults at the configured rates from a seeded
// source, so that a given seed and sequence of creation requests always
// give the same faults.
type faultInjector struct {
	mu         sync.Mutex
	beforeRate float64
	afterRate  float64
	rng        *rand.Rand
}

func newFaultInjector(config Config) *faultInjector {
	return &faultInjector{
		beforeRate: config.FailBeforeRate,
		afterRate:  config.FailAfterRate,
		rng:        rand.New(rand.NewPCG(uint64(config.Seed), 0)),
	}
}

// next draws the fault for the next charge or refund creation. A single draw in
// [0, 1) decides: below FailBeforeRate it fails before; in the
// FailAfterRate that follows, it fails after.
func (f *faultInjector) next() fault {
	f.mu.Lock()
	defer f.mu.Unlock()

	draw := f.rng.Float64()
	switch {
	case draw < f.beforeRate:
		return failBefore
	case draw < f.beforeRate+f.afterRate:
		return failAfter
	default:
		return noFault
	}
}

// setRates changes the failure rates from the next draw on.
func (f *faultInjector) setRates(beforeRate, afterRate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeRate = beforeRate
	f.afterRate = afterRate
}
