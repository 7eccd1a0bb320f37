package db

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

func TestJSONB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Package dbtest imports this one, so its URL is read here.
	url := cmp.Or(os.Getenv("TEST_DATABASE_URL"), "postgres://127.0.0.1:5432/rocketrides_test?sslmode=disable")
	pool, err := NewPool(ctx, url, 1)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	plan := conn.Conn().TypeMap().PlanScan(pgtype.JSONBOID, pgtype.BinaryFormatCode, new(json.RawMessage))
	require.IsType(t, &rawMessageScanPlan{}, plan, "a RawMessage is scanned as bytes, not unmarshaled")

	const doc = `{"b": [1, 2.50, "x"], "a": {"c": null}}`
	// PostgreSQL's text of the document: keys sorted, as it stores them.
	const stored = `{"a": {"c": null}, "b": [1, 2.50, "x"]}`
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		var raw, null, jsonNull json.RawMessage
		var object map[string]any
		err = conn.QueryRow(ctx, "SELECT $1::jsonb, $1::jsonb, NULL::jsonb, 'null'::jsonb", mode, doc).Scan(&raw, &object, &null, &jsonNull)
		require.NoError(t, err, mode)
		require.Equal(t, stored, string(raw), mode)
		require.Equal(t, map[string]any{"a": map[string]any{"c": nil}, "b": []any{1.0, 2.5, "x"}}, object, mode)
		require.Nil(t, null, mode)
		require.Equal(t, "null", string(jsonNull), mode)
	}
}
