package idempotency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Errors of CallForeign, wrapping the foreign system's own error.
var (
	// ErrForeignDefinitive means the foreign system answered for good: the
	// call failed and repeating it cannot change that (a declined card, a
	// refund refused). The workflow finishes the key with a stored error.
	ErrForeignDefinitive = errors.New("foreign call failed for good")

	// ErrForeignIndeterminate means the outcome is unknown (network
	// failure, timeout, a 5xx or 429): the call may or may not have taken
	// effect. The workflow returns the error, leaving the key at its
	// recovery point; a retry calls again with the same idempotency key and
	// learns the outcome.
	ErrForeignIndeterminate = errors.New("foreign call outcome unknown")
)

// ForeignOutcome is how a ForeignCall's Classify sorts an error.
type ForeignOutcome int

// The outcomes of a failed foreign call.
const (
	// ForeignIndeterminate: the call may or may not have taken effect.
	ForeignIndeterminate ForeignOutcome = iota

	// ForeignDefinitive: the call failed for good.
	ForeignDefinitive
)

// ForeignCall is a call to a foreign system that deduplicates requests by an
// idempotency key for a limited window (Stripe: about 24 hours). CallForeign
// makes it.
type ForeignCall[T any] struct {
	// Name names the call in log lines and errors: "charge", "refund".
	Name string

	// IdempotencyKey is the foreign system's idempotency key for this call:
	// derived from the key (its StripeIdempotencyKey), so that every attempt
	// sends the same one.
	IdempotencyKey string

	// Do makes the call with idempotencyKey.
	Do func(ctx context.Context, idempotencyKey string) (T, error)

	// Find looks for the result of an earlier call made with
	// idempotencyKey (by metadata recorded with it), and reports whether
	// there was one. An earlier call that failed for good is returned as
	// the error the foreign system would have replayed, so Classify sorts
	// it as definitive. Find is called only past Window; nil means the
	// foreign system's keys never expire.
	Find func(ctx context.Context, idempotencyKey string) (result T, found bool, err error)

	// Classify sorts an error of Do or Find. Nil treats every error as
	// indeterminate.
	Classify func(err error) ForeignOutcome

	// Window is how long the foreign system remembers an idempotency key.
	// Zero means forever.
	Window time.Duration
}

// CallForeign makes call for run's key, with no transaction open, and
// returns its result, or an error wrapping ErrForeignDefinitive or
// ErrForeignIndeterminate. Record the result in the next AtomicPhase: a crash
// between the call and that phase repeats the call, which the foreign
// system's idempotency key makes harmless.
//
// Past the window, that key no longer protects: a resumed key whose first
// attempt may be older than the window (the key was created more than Window
// before this run locked it) first asks Find for a result made earlier, and
// calls again only if there is none. The times compared are the database's
// (the key's created_at and locked_at).
func CallForeign[T any](ctx context.Context, run *Run, call *ForeignCall[T]) (T, error) {
	key := run.Key()
	if call.Find != nil && call.Window > 0 && key.LockedAt != nil && key.LockedAt.Sub(key.CreatedAt) > call.Window {
		result, found, err := call.Find(ctx, call.IdempotencyKey)
		if err != nil {
			return result, call.failed(err)
		}
		if found {
			run.engine.logger.InfoContext(ctx, "idempotency: found "+call.Name+" made before the foreign idempotency window closed",
				slog.Int64("idempotency_key_id", key.ID), slog.String("workflow", run.workflow.Name))
			return result, nil
		}
	}
	result, err := call.Do(ctx, call.IdempotencyKey)
	if err != nil {
		return result, call.failed(err)
	}
	return result, nil
}

// failed wraps err with its outcome.
func (call *ForeignCall[T]) failed(err error) error {
	if call.Classify != nil && call.Classify(err) == ForeignDefinitive {
		return fmt.Errorf("%s: %w: %w", call.Name, ErrForeignDefinitive, err)
	}
	return fmt.Errorf("%s: %w: %w", call.Name, ErrForeignIndeterminate, err)
}
