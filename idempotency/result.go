package idempotency

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
)

// Result is what a phase returns: how to move its key forward, applied in
// the phase's own transaction. The set is closed: RecoveryPoint and
// Finish.
type Result interface {
	apply(ctx context.Context, queries *db.Queries, tx pgx.Tx, wf *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error)
}

// RecoveryPoint returns a Result that moves the key to the named recovery
// point; the next phase starts there. The name must be one of the
// workflow's RecoveryPoints: any other (started and finished included) fails
// the phase with ErrUnknownRecoveryPoint, before anything is written.
func RecoveryPoint(name string) Result {
	return recoveryPoint(name)
}

type recoveryPoint string

func (r recoveryPoint) apply(ctx context.Context, queries *db.Queries, tx pgx.Tx, wf *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error) {
	if !wf.hasRecoveryPoint(string(r)) {
		return nil, fmt.Errorf("workflow %q: %w %q", wf.Name, ErrUnknownRecoveryPoint, string(r))
	}
	key, err := queries.IdempotencyKeySetRecoveryPoint(ctx, tx, &db.IdempotencyKeySetRecoveryPointParams{
		ID:            key.ID,
		RecoveryPoint: string(r),
	})
	if err != nil {
		return nil, fmt.Errorf("setting recovery point %s: %w", r, err)
	}
	return key, nil
}

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

func (r *response) apply(ctx context.Context, queries *db.Queries, tx pgx.Tx, _ *Workflow, key *db.IdempotencyKey) (*db.IdempotencyKey, error) {
	body, err := json.Marshal(r.body)
	if err != nil {
		return nil, fmt.Errorf("marshaling response: %w", err)
	}
	key, err = queries.IdempotencyKeyFinish(ctx, tx, &db.IdempotencyKeyFinishParams{
		ID:           key.ID,
		ResponseBody: body,
		ResponseCode: ptr(int32(r.status)),
	})
	if err != nil {
		return nil, fmt.Errorf("finishing idempotency key: %w", err)
	}
	return key, nil
}

func ptr[T any](v T) *T { return &v }
