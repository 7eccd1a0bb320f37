package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// service is the lifecycle every background service of this package shares,
// River's: Start returns once the service's loop runs in a goroutine of its
// own, the loop runs until Start's context is done or Stop is called, and
// Stop signals it and waits for it to finish. A service embeds one; its
// Start calls start, and Stop is service's.
type service struct {
	// logger receives the service's lines, each prefixed with name.
	logger *slog.Logger
	name   string

	mu     sync.Mutex
	cancel context.CancelFunc // nil unless started
	done   chan struct{}      // closed when the loop has returned
}

// newService returns the lifecycle of the service called name. A nil logger
// discards its lines.
func newService(name string, logger *slog.Logger) service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return service{logger: logger, name: name}
}

// start logs "<name>: started" with the service's settings and runs run in
// a goroutine until ctx is done or Stop is called; then it logs "<name>:
// stopped". It fails if the service runs already.
func (s *service) start(ctx context.Context, run func(ctx context.Context), settings ...slog.Attr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return fmt.Errorf("%s: already started", s.name)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.cancel, s.done = cancel, done
	s.logger.LogAttrs(ctx, slog.LevelInfo, s.name+": started", settings...)
	go func() {
		defer close(done)
		defer cancel()
		run(ctx)
		s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, s.name+": stopped")
	}()
	return nil
}

// Stop signals the service to stop and waits until it has: a pass under way
// finishes the key or batch at hand first. It is safe to call when the
// service was never started, and more than once.
func (s *service) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	s.mu.Lock()
	if s.done == done {
		s.cancel, s.done = nil, nil
	}
	s.mu.Unlock()
}

// loop calls pass until ctx is done. After a pass that asks to go again (it
// found a full batch) it goes on at once; otherwise it waits for interval. A
// pass that fails is logged, and tried again after the interval: a
// background process outlives a database restart.
func (s *service) loop(ctx context.Context, interval time.Duration, pass func(ctx context.Context) (again bool, err error)) {
	for {
		again, err := pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.logger.ErrorContext(ctx, s.name+": pass failed", slog.String("error", err.Error()))
			again = false
		}
		if !again && !sleep(ctx, interval) {
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
