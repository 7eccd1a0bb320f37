// Package rides holds rocket-rides' two workflows, written as atomic phases
// on package idempotency: creating a ride (POST /rides, create.go) and
// cancelling one with a refund (POST /rides/{id}/cancel, cancel.go). This
// file holds what they share: the Creator that registers both with its
// engine, authentication, the Stripe metadata and idempotency key, and the
// ride as the API shows it. The API calls the workflows for each request;
// the completer resumes abandoned keys of both through the engine
// (idempotency.Engine.Resume), without HTTP.
//
// The ride workflow's phases:
//
//	started         insert the ride and its audit record
//	                → ride_created (with a new key, in the key's transaction)
//	ride_created    charge the customer through Stripe, no transaction open;
//	                then store the charge id, stage the receipt job and
//	                finish the key with 201, in one transaction
//	                (a declined card finishes the key with 402)
//	charge_created  stage the receipt job and finish with 201: the point
//	                where the original recorded the charge; kept so that
//	                keys left there still finish
//
// The cancel workflow's phases:
//
//	started         claim the ride (a ride_cancellations row, at most one
//	                per ride) → ride_claimed (with a new key, in the key's
//	                transaction); or finish with a stored 404, 409 or 422
//	ride_claimed    refund the charge in full through Stripe, no
//	                transaction open; then record the refund on the
//	                cancellation, write the audit record ride.cancelled,
//	                stage send_cancellation_receipt and finish with 200, in
//	                one transaction (a refund refused for good deletes the
//	                claim and finishes with 503)
package rides

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// StripeIdempotencyWindowDefault is how long Stripe remembers an idempotency
// key (about 24 hours).
const StripeIdempotencyWindowDefault = 24 * time.Hour

// Errors of both workflows. Each leaves the key unlocked at its recovery
// point, so a retry with the same key resumes there.
var (
	// ErrPaymentUnavailable means Stripe's answer was lost or was not
	// definitive (network failure, timeout, Stripe 5xx or 429, or Stripe
	// still busy with the same idempotency key). Whether the charge or the
	// refund exists is unknown until a retry asks again with the same Stripe
	// idempotency key.
	ErrPaymentUnavailable = errors.New("payment processor unavailable")

	// ErrSimulatedFailure is the failure that raise_error asks for.
	ErrSimulatedFailure = errors.New("simulated failure requested with raise_error")
)

// CreatorConfig configures a Creator. Zero fields take their defaults.
type CreatorConfig struct {
	// AuthMode is how Authenticate reads a request's credential. Zero means
	// AuthModeAPIKey: the demo mode must be asked for by name.
	AuthMode AuthMode

	// Logger receives log lines. Nil discards them.
	Logger *slog.Logger

	// StripeIdempotencyWindow is how long Stripe remembers an idempotency
	// key. A charge or refund resumed later than this after its key was
	// created first looks for one made earlier for the key, rather than
	// risk a second one (idempotency.CallForeign). Zero means
	// StripeIdempotencyWindowDefault.
	StripeIdempotencyWindow time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *CreatorConfig) withDefaults() *CreatorConfig {
	var config CreatorConfig
	if c != nil {
		config = *c
	}
	config.AuthMode = cmp.Or(config.AuthMode, AuthModeAPIKey)
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	config.StripeIdempotencyWindow = cmp.Or(config.StripeIdempotencyWindow, StripeIdempotencyWindowDefault)
	return &config
}

// validate rejects settings the creator cannot run with.
func (c *CreatorConfig) validate() error {
	if c.AuthMode != AuthModeAPIKey && c.AuthMode != AuthModeDemo {
		return fmt.Errorf("AuthMode must be %q or %q, got %q", AuthModeAPIKey, AuthModeDemo, c.AuthMode)
	}
	if c.StripeIdempotencyWindow < 0 {
		return fmt.Errorf("StripeIdempotencyWindow must not be negative, got %s", c.StripeIdempotencyWindow)
	}
	return nil
}

// Creator runs the ride workflows: it creates rides (Create) and cancels
// them (Cancel), and reads them (Get). It is safe for concurrent use.
type Creator struct {
	config  *CreatorConfig
	engine  *idempotency.Engine
	exec    db.Executor
	logger  *slog.Logger
	queries *db.Queries
	stripe  *stripeclient.Client
}

// NewCreator returns a Creator that runs its phases on engine, reads on
// exec, and charges and refunds through stripe. It registers both workflows
// (WorkflowCreate, WorkflowCancel) with engine, so engine.Resume drives keys
// of either; an engine takes one creator. A nil config means every default.
func NewCreator(exec db.Executor, engine *idempotency.Engine, stripe *stripeclient.Client, config *CreatorConfig) (*Creator, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("ride creator: %w", err)
	}
	if engine == nil {
		return nil, errors.New("ride creator: an engine is required")
	}
	c := &Creator{config: config, engine: engine, exec: exec, logger: config.Logger, queries: db.New(), stripe: stripe}
	for _, wf := range []*idempotency.Workflow{c.createWorkflow(), c.cancelWorkflow()} {
		if err := engine.Register(wf); err != nil {
			return nil, fmt.Errorf("ride creator: %w", err)
		}
	}
	return c, nil
}

// Engine is the idempotency engine the creator runs its phases on.
func (c *Creator) Engine() *idempotency.Engine {
	return c.engine
}

// Complete drives an abandoned key of either workflow to its response, as
// its user, with its stored parameters: engine.Resume, which is what the
// completer calls. A key deleted meanwhile (by the reaper) is not started
// over: idempotency.ErrKeyNotFound.
func (c *Creator) Complete(ctx context.Context, key *db.IdempotencyKey) (*idempotency.Response, error) {
	return c.engine.Resume(ctx, key)
}

// Metadata keys on every charge and refund, so that each can be traced to
// its request and found again.
const (
	MetadataIdempotencyKey   = "idempotency_key"
	MetadataIdempotencyKeyID = "idempotency_key_id"
	MetadataRideID           = "ride_id"
)

// StripeIdempotencyKey is the idempotency key sent to Stripe for key's
// charge or refund: stable for the key, unique across databases.
func StripeIdempotencyKey(key *db.IdempotencyKey) string {
	return "rocket-rides-" + key.StripeIdempotencyKey.String()
}

// classifyStripe sorts a Stripe error for idempotency.CallForeign: a
// declined card or a request refused for good is definitive.
func classifyStripe(err error) idempotency.ForeignOutcome {
	if outcome, _ := stripeclient.Classify(err); outcome == stripeclient.OutcomeIndeterminate {
		return idempotency.ForeignIndeterminate
	}
	return idempotency.ForeignDefinitive
}

// finishWith returns a phase that finishes the key with a problem response.
func finishWith(details *problem.Details) idempotency.PhaseFunc {
	return func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
		return idempotency.Finish(details.Status, details), nil
	}
}

// NewProblemRideNotFound is the answer for no such ride and for another
// user's ride alike, so that it does not tell which: stored by the cancel
// workflow, and GET /rides/{id}'s.
func NewProblemRideNotFound() *problem.Details {
	return problem.New(http.StatusNotFound, "ride-not-found", "You have no ride with this id.")
}

// Statuses of a ride, as RideStatus derives them.
const (
	StatusCancelled      = "cancelled"
	StatusCharged        = "charged"
	StatusDeclined       = "declined"
	StatusPendingPayment = "pending_payment"
)

// RideStatus is a ride's status: cancelled once its refund is recorded;
// else charged once its charge is; else pending_payment while its key is
// unfinished (the charge may still come); else declined (the key finished
// without a charge, or is gone).
func RideStatus(ride *db.Ride, cancelledAt *time.Time, keyRecoveryPoint *string) string {
	switch {
	case cancelledAt != nil:
		return StatusCancelled
	case ride.StripeChargeID != nil:
		return StatusCharged
	case keyRecoveryPoint != nil && *keyRecoveryPoint != idempotency.RecoveryPointFinished:
		return StatusPendingPayment
	default:
		return StatusDeclined
	}
}

// RideBody is a ride as POST /rides shows it. Stored 201 responses hold it,
// so its fields never change: GET /rides/{id} and the cancel response show
// RideStateBody, which adds to it.
type RideBody struct {
	CreatedAt      time.Time `json:"created_at"`
	ID             int64     `json:"id"`
	OriginLat      float64   `json:"origin_lat"`
	OriginLon      float64   `json:"origin_lon"`
	StripeChargeID *string   `json:"stripe_charge_id"`
	TargetLat      float64   `json:"target_lat"`
	TargetLon      float64   `json:"target_lon"`
}

// NewRideBody returns ride as POST /rides shows it.
func NewRideBody(ride *db.Ride) *RideBody {
	return &RideBody{
		CreatedAt:      ride.CreatedAt,
		ID:             ride.ID,
		OriginLat:      ride.OriginLat,
		OriginLon:      ride.OriginLon,
		StripeChargeID: ride.StripeChargeID,
		TargetLat:      ride.TargetLat,
		TargetLon:      ride.TargetLon,
	}
}

// RideStateBody is a ride with its status and its refund, as GET
// /rides/{id} and the cancel response show it.
type RideStateBody struct {
	*RideBody
	CancelledAt    *time.Time `json:"cancelled_at"`
	Status         string     `json:"status"`
	StripeRefundID *string    `json:"stripe_refund_id"`
}

// Get returns the user's ride rideID with its status, or ErrRideNotFound
// for no such ride and for another user's alike.
func (c *Creator) Get(ctx context.Context, user *db.User, rideID int64) (*RideStateBody, error) {
	row, err := c.queries.RideGetWithState(ctx, c.exec, &db.RideGetWithStateParams{ID: rideID, UserID: user.ID})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrRideNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("getting ride %d: %w", rideID, err)
	}
	return &RideStateBody{
		RideBody:       NewRideBody(&row.Ride),
		CancelledAt:    row.CancellationCancelledAt,
		Status:         RideStatus(&row.Ride, row.CancellationCancelledAt, row.KeyRecoveryPoint),
		StripeRefundID: row.CancellationStripeRefundID,
	}, nil
}

// ErrRideNotFound means the user has no ride of that id (there is none, or
// it is another user's).
var ErrRideNotFound = errors.New("ride not found")
