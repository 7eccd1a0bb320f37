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

	// ErrUnknownRecoveryPoint means a recovery point is not one of the
	// workflow's: a phase asked to move a key there (a bug; nothing was
	// written), or a key is there that a newer version wrote.
	ErrUnknownRecoveryPoint = errors.New("unknown recovery point")

	// ErrUnknownWorkflow means no workflow of that name is registered: a
	// request named none, or a key belongs to a workflow this binary does
	// not know (an older or newer version, during a rolling deploy). The
	// completer skips such a key, never driving it as something else.
	ErrUnknownWorkflow = errors.New("unknown workflow")
)
