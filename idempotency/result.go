package idempotency

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rocketrides/rocketrides/db"
)

// Result is what a phase returns: how to move its key forward, queued in
// the phase's own transaction after the phase's statements. The set is
// closed: RecoveryPoint and Finish.
type Result interface {
	// apply queues the key's update in tx and returns the key it will
	// scan, filled once the batch is sent.
	apply(ctx context.Context, queries *db.Queries, tx *db.Pipeline, wf *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error)

	// recoveryPoint is where the update takes the key.
	recoveryPoint() string
}

// RecoveryPoint returns a Result that moves the key to the named recovery
// point; the next phase starts there. The name must be one of the
// workflow's RecoveryPoints: any other (started and finished included) fails
// the phase with ErrUnknownRecoveryPoint, before anything is written.
func RecoveryPoint(name string) Result {
	return recoveryPoint(name)
}

type recoveryPoint string

func (r recoveryPoint) apply(ctx context.Context, queries *db.Queries, tx *db.Pipeline, wf *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error) {
	if !wf.hasRecoveryPoint(string(r)) {
		return nil, fmt.Errorf("workflow %q: %w %q", wf.Name, ErrUnknownRecoveryPoint, string(r))
	}
	// By user and value: a new key's id is not known before the batch is
	// sent.
	key, err := queries.IdempotencyKeySetRecoveryPointByKey(ctx, tx, &db.IdempotencyKeySetRecoveryPointByKeyParams{
		IdempotencyKey: key.IdempotencyKey,
		RecoveryPoint:  string(r),
		UserID:         key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("setting recovery point %s: %w", r, err)
	}
	return key, nil
}

func (r recoveryPoint) recoveryPoint() string { return string(r) }

// Finish returns a Result that finishes the key with a definitive
// response, stored for replay: a success, or an error that retrying cannot
// change (a declined card). Body is marshaled to JSON.
func Finish(status int, body any) Result {
	return &response{body: body, status: status}
}

type response struct {
	body   any
	status int
}

func (r *response) apply(ctx context.Context, queries *db.Queries, tx *db.Pipeline, _ *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error) {
	body, err := json.Marshal(r.body)
	if err != nil {
		return nil, fmt.Errorf("marshaling response: %w", err)
	}
	key, err = queries.IdempotencyKeyFinishByKey(ctx, tx, &db.IdempotencyKeyFinishByKeyParams{
		IdempotencyKey: key.IdempotencyKey,
		ResponseBody:   body,
		ResponseCode:   ptr(int32(r.status)),
		UserID:         key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("finishing idempotency key: %w", err)
	}
	return key, nil
}

func (r *response) recoveryPoint() string { return RecoveryPointFinished }

func ptr[T any](v T) *T { return &v }
