package db

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt < 100; attempt++ {
		pause := backoff(attempt)
		require.Positive(t, pause, "attempt %d", attempt)
		require.LessOrEqual(t, pause, txBackoffMax+time.Microsecond, "attempt %d", attempt)
	}
}
