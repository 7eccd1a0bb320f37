// Package migrations holds the database schema as goose SQL migrations. They
// are embedded in the binary, applied by `rocketrides migrate`, and read by
// sqlc as the schema it generates package db from.
package migrations

import "embed"

// FS holds the migration files, named so that their lexical order is the
// order goose applies them in.
//
//go:embed *.sql
var FS embed.FS
