package idempotency

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
)

func TestKeyAttrNamesAKeyWithoutIDByUserAndValue(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))

	logger.Info("known", keyAttr(&db.IdempotencyKey{ID: 7, IdempotencyKey: "k", UserID: 3}))
	logger.Info("lost", keyAttr(&db.IdempotencyKey{IdempotencyKey: "k", UserID: 3}))

	require.Equal(t, "level=INFO msg=known idempotency_key_id=7\n"+
		"level=INFO msg=lost idempotency_key.user_id=3 idempotency_key.value=k\n", out.String())
}
