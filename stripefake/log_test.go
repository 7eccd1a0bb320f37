package stripefake_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/stripefake"
)

// TestRequestLinesAreDebug checks that the line each request gets is at
// debug level, so that a fake logging at info level stays quiet under load.
func TestRequestLinesAreDebug(t *testing.T) {
	t.Parallel()
	var infoLog, debugLog bytes.Buffer
	for _, tt := range []struct {
		level slog.Level
		out   *bytes.Buffer
	}{{slog.LevelInfo, &infoLog}, {slog.LevelDebug, &debugLog}} {
		logger := slog.New(slog.NewTextHandler(tt.out, &slog.HandlerOptions{Level: tt.level}))
		_, sc := newFake(t, stripefake.Config{Logger: logger})
		newCustomer(t, sc, "tok_visa")
	}

	require.Empty(t, infoLog.String())
	require.Contains(t, debugLog.String(), "level=DEBUG msg=\"stripe-fake: request\" method=POST path=/v1/customers status=200")
}
