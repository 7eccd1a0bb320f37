package db

import (
	"cmp"
	"context"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

func TestUUID(t *testing.T) {
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

	// The pool's connections encode UUIDs as their bytes, not through
	// their text.
	for _, value := range []any{uuid.UUID{}, &uuid.UUID{}} {
		plan := conn.Conn().TypeMap().PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, value)
		require.IsType(t, &uuidEncodePlan{}, plan, "%T", value)
	}

	id := uuid.New()
	var (
		got, viaPointer uuid.UUID
		pointer, null   *uuid.UUID
	)
	err = conn.QueryRow(ctx, "SELECT $1::uuid, $2::uuid, $2::uuid, $3::uuid", id, &id, (*uuid.UUID)(nil)).
		Scan(&got, &viaPointer, &pointer, &null)
	require.NoError(t, err)
	require.Equal(t, id, got)
	require.Equal(t, id, viaPointer)
	require.Equal(t, &id, pointer)
	require.Nil(t, null)
}
