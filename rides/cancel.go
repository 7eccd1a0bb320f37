package rides

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// WorkflowCancel is the cancel workflow's registered name, stored on its
// keys: the route pattern. The key's request_path is the concrete path
// (CancelPath).
const WorkflowCancel = "POST /rides/{id}/cancel"

// RecoveryPointRideClaimed is the cancel workflow's one recovery point
// between started and finished: the ride is claimed (a ride_cancellations
// row without a refund), the refund is next.
const RecoveryPointRideClaimed = "ride_claimed"

// What a cancellation records.
const (
	AuditActionRideCancelled = "ride.cancelled"
	MaxReasonLength          = 500
	MessageCancelled         = "Ride cancelled. Your refund is on its way."
)

// ErrRidePending means the ride's creation has not finished: it has no
// charge yet and its key is unfinished, so there is nothing to refund yet and
// no telling whether there will be. Nothing is stored: a retry with the same
// key, once the ride is charged or declined, gets the definitive answer.
var ErrRidePending = errors.New("the ride's payment is still pending")

// CancelPath is the concrete path of the cancel request of ride rideID,
// stored on its key: a key reused for another ride is a mismatch.
func CancelPath(rideID int64) string {
	return "/rides/" + strconv.FormatInt(rideID, 10) + "/cancel"
}

// CancelParams are a cancel request's parameters, stored on its idempotency
// key: the path's ride id with the body's reason, so that the same key with
// another ride or reason is a mismatch, and the completer can restore the
// request from the key alone.
type CancelParams struct {
	// Reason is the user's reason, at most MaxReasonLength characters;
	// empty for none.
	Reason string `json:"reason,omitempty"`
	RideID int64  `json:"ride_id"`
}

// CancelRequest is one request to cancel a ride.
type CancelRequest struct {
	// IdempotencyKey is the client's key.
	IdempotencyKey string

	// Known is the key as read by Authenticate, if it exists.
	Known *idempotency.KnownKey

	// OriginIP is the client's address, for the audit record.
	OriginIP netip.Addr

	Params CancelParams

	User *db.User
}

// CancelledBody is the body of a cancel request's 200 response.
type CancelledBody struct {
	Message string         `json:"message"`
	Ride    *RideStateBody `json:"ride"`
}

// Cancel runs the cancel request to its definitive response, resuming from
// wherever an earlier attempt with the same key stopped. Its stored answers
// are a 200, and the problems 404 ride-not-found, 409
// ride-already-cancelled, 422 ride-not-refundable and 503 payment-rejected;
// ErrRidePending and ErrPaymentUnavailable are not stored, and a retry
// resumes.
//
// One cancellation per ride is the resource's own constraint (the unique
// ride_id of ride_cancellations), not the key's: two requests with different
// keys race for one claim, and the one that loses answers 409. If Stripe
// refuses the refund for good, the finishing phase deletes the claim: the
// ride stays charged, the key stores 503 payment-rejected, and another key
// may try again.
func (c *Creator) Cancel(ctx context.Context, req *CancelRequest) (*idempotency.Response, error) {
	params, err := json.Marshal(&req.Params)
	if err != nil {
		return nil, fmt.Errorf("marshaling params: %w", err)
	}
	w := &cancellation{creator: c, req: req}
	return c.engine.Execute(ctx, &idempotency.Request{
		Key:      req.IdempotencyKey,
		Known:    req.Known,
		Method:   http.MethodPost,
		Params:   params,
		Path:     CancelPath(req.Params.RideID),
		UserID:   req.User.ID,
		Workflow: WorkflowCancel,
	}, w.phases())
}

// cancelWorkflow is the cancel workflow as the engine registers it: the
// completer restores a request from its key's stored parameters and user.
func (c *Creator) cancelWorkflow() *idempotency.Workflow {
	return &idempotency.Workflow{
		Name:           WorkflowCancel,
		RecoveryPoints: []string{RecoveryPointRideClaimed},
		Restore: func(ctx context.Context, key *db.IdempotencyKey) (*idempotency.Phases, error) {
			var params CancelParams
			if err := json.Unmarshal(key.RequestParams, &params); err != nil {
				return nil, fmt.Errorf("decoding stored params: %w", err)
			}
			user, err := c.queries.UserGetByID(ctx, c.exec, key.UserID)
			if err != nil {
				return nil, fmt.Errorf("getting user %d: %w", key.UserID, err)
			}
			w := &cancellation{creator: c, req: &CancelRequest{
				IdempotencyKey: key.IdempotencyKey,
				OriginIP:       netip.AddrFrom4([4]byte{127, 0, 0, 1}), // as the ride workflow's completer
				Params:         params,
				User:           user,
			}}
			return w.phases(), nil
		},
	}
}

// cancellation holds one cancel request's state across its phases.
type cancellation struct {
	creator *Creator
	req     *CancelRequest

	// claimed and ride are what the claim phase wrote and read, filled once
	// it committed; a request that resumes at ride_claimed reads them.
	claimed *db.RideCancellation
	ride    *db.Ride
}

func (w *cancellation) phases() *idempotency.Phases {
	return &idempotency.Phases{
		Start: w.claim,
		Steps: map[string]idempotency.StepFunc{
			RecoveryPointRideClaimed: w.refund,
		},
	}
}

// claim is the phase at started: it reads the user's ride and claims it
// for this key, or finishes with the stored answer for a ride that cannot
// be cancelled. Two round trips: the ride is locked and read (so that two
// claims of one ride take turns, and the second sees the first), then the
// claim and the key's update are sent with COMMIT. The claim finds the key
// by its user and value: with a new key, it is sent in the transaction that
// inserts the key.
func (w *cancellation) claim(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
	w.claimed, w.ride = nil, nil
	queries := w.creator.queries
	rideKey := &db.RideLockForUpdateParams{ID: w.req.Params.RideID, UserID: key.UserID}
	err := queries.RideLockForUpdate(ctx, tx, rideKey)
	if err != nil {
		return nil, fmt.Errorf("locking ride %d: %w", w.req.Params.RideID, err)
	}
	row, err := queries.RideGetWithState(ctx, tx, &db.RideGetWithStateParams{ID: rideKey.ID, UserID: rideKey.UserID})
	if err == nil {
		err = tx.Flush(ctx)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return finish(NewProblemRideNotFound()), nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting ride %d: %w", w.req.Params.RideID, err)
	}
	switch RideStatus(&row.Ride, row.CancellationCancelledAt, row.KeyRecoveryPoint) {
	case StatusCancelled:
		return finish(newProblemAlreadyCancelled()), nil
	case StatusPendingPayment:
		return nil, ErrRidePending
	case StatusDeclined:
		return finish(problem.New(http.StatusUnprocessableEntity, "ride-not-refundable",
			"The ride was never charged (its payment was declined): there is nothing to refund.")), nil
	}
	if row.CancellationID != nil {
		// Another key claimed the ride first (it may still be refunding).
		return finish(newProblemAlreadyCancelled()), nil
	}
	var reason *string
	if w.req.Params.Reason != "" {
		reason = &w.req.Params.Reason
	}
	// A claim that another key made meanwhile is a unique violation: the
	// ride's lock makes that impossible at READ COMMITTED, and at
	// SERIALIZABLE PostgreSQL reports it as a serialization failure, which
	// runs the phase again.
	w.claimed, err = queries.RideCancellationClaim(ctx, tx, &db.RideCancellationClaimParams{
		IdempotencyKey: key.IdempotencyKey,
		Reason:         reason,
		RideID:         row.Ride.ID,
		UserID:         key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("claiming ride %d: %w", row.Ride.ID, err)
	}
	w.ride = &row.Ride
	return idempotency.RecoveryPoint(RecoveryPointRideClaimed), nil
}

// refund is the step at ride_claimed: the Stripe refund, with no
// transaction open, then one phase that records its outcome.
func (w *cancellation) refund(ctx context.Context, run *idempotency.Run) error {
	key := run.Key()
	if err := w.loadClaim(ctx, key); err != nil {
		return err
	}
	claim, ride := w.claimed, w.ride
	if ride.StripeChargeID == nil {
		return fmt.Errorf("ride %d claimed by cancellation %d has no charge", ride.ID, claim.ID)
	}

	refund, err := idempotency.CallForeign(ctx, run, w.refundCall(key, ride))
	if err != nil {
		if !errors.Is(err, idempotency.ErrForeignDefinitive) {
			return fmt.Errorf("%w: %w", ErrPaymentUnavailable, err)
		}
		w.creator.logger.ErrorContext(ctx, "rides: Stripe refused refund", slog.Int64("idempotency_key_id", key.ID),
			slog.Int64("ride_id", ride.ID), slog.String("error", err.Error()))
		return run.AtomicPhase(ctx, func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
			if err := w.creator.queries.RideCancellationDelete(ctx, tx, claim.ID); err != nil {
				return nil, fmt.Errorf("releasing claim %d: %w", claim.ID, err)
			}
			return finish(problem.New(http.StatusServiceUnavailable, "payment-rejected",
				"Error from payment processor. Please contact support.")), nil
		})
	}

	return run.AtomicPhase(ctx, func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
		return w.finishCancellation(ctx, tx, key, claim, ride, refund)
	})
}

// loadClaim reads the key's claim and its ride when the request resumed at
// ride_claimed (one round trip). The claim phase's are reused only if they
// are this key's: after a crash, or if that phase rolled back, they are
// not.
func (w *cancellation) loadClaim(ctx context.Context, key *db.IdempotencyKey) error {
	if w.claimed != nil && w.ride != nil && w.claimed.IdempotencyKeyID != nil && *w.claimed.IdempotencyKeyID == key.ID {
		return nil
	}
	row, err := w.creator.queries.RideCancellationGetWithRideByIdempotencyKeyID(ctx, w.creator.exec, &key.ID)
	if err != nil {
		return fmt.Errorf("getting cancellation and ride of key %d at ride_claimed: %w", key.ID, err)
	}
	w.claimed, w.ride = &row.RideCancellation, &row.Ride
	return nil
}

// refundCall is the full refund of ride's charge, with the key's Stripe
// idempotency key. Past Stripe's idempotency window CallForeign first looks
// for a refund made for this key earlier: a second refund of the charge
// would be refused (charge_already_refunded) and read as a refusal for good.
func (w *cancellation) refundCall(key *db.IdempotencyKey, ride *db.Ride) *idempotency.ForeignCall[*stripe.Refund] {
	charge := *ride.StripeChargeID
	return &idempotency.ForeignCall[*stripe.Refund]{
		Name:           "refund",
		IdempotencyKey: StripeIdempotencyKey(key),
		Do: func(ctx context.Context, stripeKey string) (*stripe.Refund, error) {
			return w.creator.stripe.RefundCreate(ctx, &stripeclient.RefundParams{
				Charge:         charge,
				IdempotencyKey: stripeKey,
				Metadata: map[string]string{
					MetadataIdempotencyKey:   stripeKey,
					MetadataIdempotencyKeyID: strconv.FormatInt(key.ID, 10),
					MetadataRideID:           strconv.FormatInt(ride.ID, 10),
				},
				Reason: "requested_by_customer",
			})
		},
		Find: func(ctx context.Context, stripeKey string) (*stripe.Refund, bool, error) {
			existing, err := w.creator.stripe.RefundFind(ctx, charge, MetadataIdempotencyKey, stripeKey)
			if err != nil || existing == nil {
				return nil, false, err
			}
			w.creator.logger.InfoContext(ctx, "rides: found refund made before Stripe's idempotency window closed",
				slog.Int64("idempotency_key_id", key.ID), slog.String("stripe_refund_id", existing.ID))
			return existing, true, nil
		},
		Classify: classifyStripe,
		Window:   w.creator.config.StripeIdempotencyWindow,
	}
}

// finishCancellation records the refund on the claim (the ride is
// cancelled), writes the audit record, stages the cancellation receipt and
// returns the 200 response: the finishing phase.
func (w *cancellation) finishCancellation(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey, claim *db.RideCancellation,
	ride *db.Ride, refund *stripe.Refund) (idempotency.Result, error) {
	queries := w.creator.queries
	// The time is set here, as PostgreSQL stores it (to the microsecond), so
	// that the response shows it without reading it back: one round trip.
	cancelledAt := time.Now().UTC().Truncate(time.Microsecond)
	err := queries.RideCancellationSetRefund(ctx, tx, &db.RideCancellationSetRefundParams{
		CancelledAt:    &cancelledAt,
		ID:             claim.ID,
		StripeRefundID: &refund.ID,
	})
	if err != nil {
		return nil, fmt.Errorf("recording refund on cancellation %d: %w", claim.ID, err)
	}
	err = queries.AuditRecordInsert(ctx, tx, &db.AuditRecordInsertParams{
		Action:       AuditActionRideCancelled,
		Data:         key.RequestParams,
		OriginIP:     w.req.OriginIP,
		ResourceID:   ride.ID,
		ResourceType: "ride",
		UserID:       key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("inserting audit record: %w", err)
	}
	args, err := json.Marshal(&CancellationReceiptArgs{
		Amount:         refund.Amount,
		Currency:       string(refund.Currency),
		RideID:         ride.ID,
		StripeRefundID: refund.ID,
		UserID:         ride.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("marshaling cancellation receipt job args: %w", err)
	}
	err = queries.StagedJobInsert(ctx, tx, &db.StagedJobInsertParams{JobName: JobNameSendCancellationReceipt, JobArgs: args})
	if err != nil {
		return nil, fmt.Errorf("staging cancellation receipt job: %w", err)
	}
	return idempotency.Finish(http.StatusOK, &CancelledBody{Message: MessageCancelled, Ride: &RideStateBody{
		RideBody:       NewRideBody(ride),
		CancelledAt:    &cancelledAt,
		Status:         StatusCancelled,
		StripeRefundID: &refund.ID,
	}}), nil
}

// newProblemAlreadyCancelled is the answer for a ride cancelled, or being
// cancelled, under another key.
func newProblemAlreadyCancelled() *problem.Details {
	return problem.New(http.StatusConflict, "ride-already-cancelled", "The ride is already cancelled.")
}

// finish returns a Result that finishes the key with a stored problem.
func finish(details *problem.Details) idempotency.Result {
	return idempotency.Finish(details.Status, details)
}
