package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("StopBeforeStartIsSafe", func(t *testing.T) {
		t.Parallel()
		s := newService("test", nil)
		s.Stop()
		s.Stop()
	})

	t.Run("StartReturnsAndStopWaits", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		s := newService("test", slog.New(slog.NewTextHandler(&logs, nil)))
		running, finished := make(chan struct{}), make(chan struct{})
		require.NoError(t, s.start(ctx, func(ctx context.Context) {
			close(running)
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // Stop must wait for this
			close(finished)
		}, slog.Int("batch_size", 3)))
		<-running
		require.ErrorContains(t, s.start(ctx, func(context.Context) {}), "test: already started")

		s.Stop()
		select {
		case <-finished:
		default:
			require.FailNow(t, "Stop returned before the service finished")
		}
		require.Contains(t, logs.String(), `msg="test: started" batch_size=3`)
		require.Contains(t, logs.String(), `msg="test: stopped"`)

		require.NoError(t, s.start(ctx, func(context.Context) {}), "a stopped service starts again")
		s.Stop()
	})
}

// requireStops calls stop and fails the test unless it returns within ten
// seconds.
func requireStops(t *testing.T, stop func()) {
	t.Helper()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop()
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the service did not stop after its context was cancelled")
	}
}
