package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// TestCompleterLogsWhyNoKeyFinished checks the line of a pass that found
// keys and finished none: it says so, and its counts say why (here, Stripe
// failing: the keys stay unfinished). A pass that finds nothing logs at
// debug only.
func TestCompleterLogsWhyNoKeyFinished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := dbtest.Tx(ctx, t)
	fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, baseURL)
	user := completerUser(ctx, t, tx, stripe, "tok_visa")
	var logs bytes.Buffer
	completer := completerNew(t, tx, ridestest.NewCreator(t, db.Savepoint{Tx: tx}, nil, stripe), &CompleterConfig{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})

	_, err := completer.runOnce(ctx)
	require.NoError(t, err)
	require.Empty(t, logs.String(), "an idle pass is quiet at info")

	now := completerDBNow(ctx, t, tx)
	for range 2 {
		testfactory.IdempotencyKey(ctx, t, tx, user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(now.Add(-301 * time.Second)),
			LastRunAt: testfactory.Ptr(now.Add(-61 * time.Second)),
		})
	}
	fake.SetFailureRates(1, 0)
	_, err = completer.runOnce(ctx)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1, logs.String())
	require.Regexp(t, `level=INFO msg="completer: pass finished no key" num_found=2 num_finished=0 num_in_progress=0 num_unfinished=2 `, lines[0])
}
