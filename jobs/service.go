package jobs

import (
	"context"
	"time"
)

// runLoop calls runOnce until ctx is done. After a pass that found a full
// batch it goes again at once; otherwise it sleeps for interval. An error is
// reported to onError and the loop goes on after the interval: a background
// process outlives a database restart.
func runLoop(ctx context.Context, interval time.Duration, runOnce func(ctx context.Context) (fullBatch bool, err error), onError func(error)) {
	for {
		fullBatch, err := runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			onError(err)
		}
		if fullBatch && err == nil {
			continue
		}
		if !sleep(ctx, interval) {
			return
		}
	}
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
