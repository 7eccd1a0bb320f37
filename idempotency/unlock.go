package idempotency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/db"
)

// How the engine releases a lock that a request ending early holds: at once,
// and if the database does not answer, again in the background.
const (
	unlockAttemptTimeout = 2 * time.Second
	unlockBackoffMin     = 100 * time.Millisecond
	unlockBackoffMax     = 2 * time.Second
	resolveTimeout       = 2 * time.Second
)

// unlocker retries, in the background, the unlocks that failed: a request
// that ended because the database was down must not leave its key locked
// for the lock timeout once the database is back. Close waits for it.
type unlocker struct {
	ctx    context.Context // cancelled by Close once its wait is over
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newUnlocker() *unlocker {
	ctx, cancel := context.WithCancel(context.Background())
	return &unlocker{ctx: ctx, cancel: cancel}
}

// unlock releases key's lock if this request still owns it. It runs even
// when ctx is done (the client went away, the request's deadline passed),
// so the next attempt need not wait for the lock to time out. If the
// database does not answer, it keeps trying in the background, with a
// growing pause, until it does or Close gives up.
func (e *Engine) unlock(ctx context.Context, key *db.IdempotencyKey) {
	if key == nil || key.LockToken == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	// By user and value: a new key whose insert's answer was lost has no
	// id known here.
	params := &db.IdempotencyKeyUnlockByKeyParams{IdempotencyKey: key.IdempotencyKey, LockToken: key.LockToken, UserID: key.UserID}
	err := e.unlockOnce(ctx, params)
	if err == nil {
		return
	}
	if e.unlocks.ctx.Err() != nil {
		e.logger.ErrorContext(ctx, "idempotency: failed to unlock key while closing",
			keyAttr(key), slog.String("error", err.Error()))
		return
	}
	name := keyAttr(key)
	e.logger.WarnContext(ctx, "idempotency: failed to unlock key, retrying in the background",
		name, slog.String("error", err.Error()))
	e.unlocks.wg.Add(1)
	go func() {
		defer e.unlocks.wg.Done()
		pause := unlockBackoffMin
		for attempt := 2; ; attempt++ {
			timer := time.NewTimer(pause)
			select {
			case <-e.unlocks.ctx.Done():
				timer.Stop()
				e.logger.ErrorContext(ctx, "idempotency: gave up unlocking key at close; it unlocks at the lock timeout",
					name, slog.Int("attempts", attempt-1))
				return
			case <-timer.C:
			}
			if err := e.unlockOnce(ctx, params); err == nil {
				e.logger.InfoContext(ctx, "idempotency: key unlocked after retries",
					name, slog.Int("attempts", attempt))
				return
			}
			pause = min(2*pause, unlockBackoffMax)
		}
	}()
}

func (e *Engine) unlockOnce(ctx context.Context, params *db.IdempotencyKeyUnlockByKeyParams) error {
	ctx, cancel := context.WithTimeout(ctx, unlockAttemptTimeout)
	defer cancel()
	_, err := e.queries.IdempotencyKeyUnlockByKey(ctx, e.exec, params)
	return err
}

// Close waits, up to ctx's deadline, for the unlocks still being retried
// in the background, then stops them (their keys unlock at the lock
// timeout). A process calls it once its requests have ended, before it
// closes its pool. It returns ctx's error if it gave up on some.
func (e *Engine) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.unlocks.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		e.unlocks.cancel()
		return nil
	case <-ctx.Done():
		e.unlocks.cancel()
		<-done
		return fmt.Errorf("idempotency engine: unlocks still pending at close: %w", ctx.Err())
	}
}

// resolveCommit finds out whether a phase whose commit has an unknown
// outcome (db.ErrCommitInDoubt: the connection failed after COMMIT was sent)
// committed after all, by reading the key again: it returns the key as the
// phase left it if it did, nil if it did not or the database cannot tell.
// before is the recovery point the key had before the phase, "" for the key
// phase; attempted is the key as the phase would have left it.
func (e *Engine) resolveCommit(ctx context.Context, err error, before string, attempted *db.IdempotencyKey) *db.IdempotencyKey {
	if attempted == nil || !errors.Is(err, db.ErrCommitInDoubt) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	// By user and value: a new key's id is unknown if the answer to its
	// insert was lost.
	current, readErr := e.queries.IdempotencyKeyGetByUserIDAndKey(ctx, e.exec, &db.IdempotencyKeyGetByUserIDAndKeyParams{
		IdempotencyKey: attempted.IdempotencyKey,
		UserID:         attempted.UserID,
	})
	if readErr != nil {
		e.logger.WarnContext(ctx, "idempotency: commit in doubt and key unreadable",
			keyAttr(attempted), slog.String("error", readErr.Error()))
		return nil
	}
	committed := current.RecoveryPoint == attempted.RecoveryPoint && sameToken(current.LockToken, attempted.LockToken)
	if before != "" {
		// The same lock held before and after: only a changed recovery
		// point says the phase committed.
		committed = current.RecoveryPoint == attempted.RecoveryPoint && current.RecoveryPoint != before &&
			(current.RecoveryPoint == RecoveryPointFinished || sameToken(current.LockToken, attempted.LockToken))
	}
	e.logger.InfoContext(ctx, "idempotency: commit in doubt resolved",
		slog.Int64("idempotency_key_id", current.ID), slog.String("recovery_point", current.RecoveryPoint), slog.Bool("committed", committed))
	if !committed {
		return nil
	}
	return current
}

// keyAttr names key in a log line: by its id or, for a new key whose
// insert's answer was lost (its id never learned), by its user and value.
func keyAttr(key *db.IdempotencyKey) slog.Attr {
	if key.ID != 0 {
		return slog.Int64("idempotency_key_id", key.ID)
	}
	return slog.Group("idempotency_key", slog.Int64("user_id", key.UserID), slog.String("value", key.IdempotencyKey))
}

func sameToken(a, b *uuid.UUID) bool {
	return a != nil && b != nil && *a == *b
}
