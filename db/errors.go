package db

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes that the application handles.
const (
	codeDeadlockDetected     = "40P01"
	codeInvalidCatalogName   = "3D000"
	codeLockNotHeld          = "RR001"
	codeSerializationFailure = "40001"
	codeUniqueViolation      = "23505"
)

// IsNotFound reports whether err means that a query for one row found
// none.
func IsNotFound(err error) bool {
	return errors.Is(err, pgx.ErrNoRows)
}

// IsSerializationFailure reports whether err is a serialization failure
// (SQLSTATE 40001): the transaction conflicted with a concurrent one and may
// succeed if run again.
func IsSerializationFailure(err error) bool {
	return hasCode(err, codeSerializationFailure)
}

// IsDeadlock reports whether err is a detected deadlock (SQLSTATE 40P01).
func IsDeadlock(err error) bool {
	return hasCode(err, codeDeadlockDetected)
}

// IsUniqueViolation reports whether err is a unique violation (SQLSTATE
// 23505), optionally on the named constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != codeUniqueViolation {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}

// IsLockNotHeld reports whether err is idempotency_key_lock_check's
// (SQLSTATE RR001, migration 00006): the lock token no longer owns the key's
// lock.
func IsLockNotHeld(err error) bool {
	return hasCode(err, codeLockNotHeld)
}

// IsUndefinedDatabase reports whether err means that the database to
// connect to does not exist (SQLSTATE 3D000).
func IsUndefinedDatabase(err error) bool {
	return hasCode(err, codeInvalidCatalogName)
}

// IsRetryable reports whether a transaction that failed with err can simply
// be run again: a serialization failure or a deadlock.
func IsRetryable(err error) bool {
	return IsSerializationFailure(err) || IsDeadlock(err)
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
