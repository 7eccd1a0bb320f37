package db_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
)

// poolConn returns a connection of a pool of NewPool on the test database,
// with the codecs it registers.
func poolConn(t *testing.T) *pgxpool.Conn {
	t.Helper()
	pool, err := db.NewPool(t.Context(), dbtest.DatabaseURL(), 1)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(t.Context())
	require.NoError(t, err)
	t.Cleanup(conn.Release)
	return conn
}

func TestUUID(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn := poolConn(t)

	// The pool's connections encode UUIDs as their bytes, not through
	// their text.
	for _, value := range []any{uuid.UUID{}, &uuid.UUID{}} {
		plan := conn.Conn().TypeMap().PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, value)
		require.IsType(t, &db.UUIDEncodePlan{}, plan, "%T", value)
	}

	id := uuid.New()
	var (
		got, viaPointer uuid.UUID
		pointer, null   *uuid.UUID
	)
	err := conn.QueryRow(ctx, "SELECT $1::uuid, $2::uuid, $2::uuid, $3::uuid", id, &id, (*uuid.UUID)(nil)).
		Scan(&got, &viaPointer, &pointer, &null)
	require.NoError(t, err)
	require.Equal(t, id, got)
	require.Equal(t, id, viaPointer)
	require.Equal(t, &id, pointer)
	require.Nil(t, null)
}

func TestJSONB(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn := poolConn(t)

	plan := conn.Conn().TypeMap().PlanScan(pgtype.JSONBOID, pgtype.BinaryFormatCode, new(json.RawMessage))
	require.IsType(t, &db.RawMessageScanPlan{}, plan, "a RawMessage is scanned as bytes, not unmarshaled")

	const doc = `{"b": [1, 2.50, "x"], "a": {"c": null}}`
	// PostgreSQL's text of the document: keys sorted, as it stores them.
	const stored = `{"a": {"c": null}, "b": [1, 2.50, "x"]}`
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		var raw, null, jsonNull json.RawMessage
		var object map[string]any
		err := conn.QueryRow(ctx, "SELECT $1::jsonb, $1::jsonb, NULL::jsonb, 'null'::jsonb", mode, doc).Scan(&raw, &object, &null, &jsonNull)
		require.NoError(t, err, mode)
		require.Equal(t, stored, string(raw), mode)
		require.Equal(t, map[string]any{"a": map[string]any{"c": nil}, "b": []any{1.0, 2.5, "x"}}, object, mode)
		require.Nil(t, null, mode)
		require.Equal(t, "null", string(jsonNull), mode)
	}
}
