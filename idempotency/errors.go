package idempotency

import "errors"

// Errors that Execute returns for the request as a whole. Errors of a
// workflow's own phases are returned wrapped as they are.
var (
	// ErrConflict means a phase kept conflicting with concurrent
	// transactions after every retry. Nothing was committed by that phase;
	// retrying with the same key is safe.
	ErrConflict = errors.New("conflict with a concurrent request")

	// ErrKeyNotFound means a ResumeOnly request found no key to resume.
	ErrKeyNotFound = errors.New("idempotency key not found")

	// ErrLockLost means another request took over the key's lock (this one
	// had held it longer than the lock timeout). This request wrote nothing
	// after losing it.
	ErrLockLost = errors.New("idempotency key lock was taken over by another request")

	// ErrParamsMismatch means the key was first used for a different
	// request: another method, path or parameters.
	ErrParamsMismatch = errors.New("idempotency key was used for a different request")

	// ErrRequestInProgress means another request holds the key's lock.
	ErrRequestInProgress = errors.New("a request with this idempotency key is in progress")

	// ErrUnknownRecoveryPoint means the key's recovery point has no step in
	// the workflow: a bug, or a key written by a newer version.
	ErrUnknownRecoveryPoint = errors.New("no step for recovery point")
)
