package db

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCreateDatabaseNoName(t *testing.T) {
	t.Setenv("PGDATABASE", "") // pgx would take the name from it

	for _, databaseURL := range []string{"", "postgres://127.0.0.1:5432/?sslmode=disable"} {
		err := CreateDatabase(context.Background(), databaseURL)
		require.ErrorIs(t, err, ErrNoDatabaseName, "database URL %q", databaseURL)
	}
}
