// Package rides creates rides: the POST /rides workflow, written as atomic
// phases on package idempotency. The API calls it for each request, and the
// completer calls it, without HTTP, for requests that were abandoned.
//
// The phases:
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
package rides

import (
	"cmp"
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

// Recovery points of the ride workflow, between idempotency's started and
// finished.
const (
	RecoveryPointRideCreated   = "ride_created"
	RecoveryPointChargeCreated = "charge_created"
)

// What a ride costs, and what is recorded about it.
const (
	AuditActionRideCreated = "ride.created"
	ChargeAmount           = 2000
	ChargeCurrency         = "usd"
	JobNameSendRideReceipt = "send_ride_receipt"
	MessageOK              = "Payment accepted. Your pilot is on their way!"
	RequestMethod          = http.MethodPost
	RequestPath            = "/rides"
)

// StripeIdempotencyWindowDefault is how long Stripe remembers an idempotency
// key (about 24 hours).
const StripeIdempotencyWindowDefault = 24 * time.Hour

// Errors of the ride workflow. Each leaves the key unlocked at its recovery
// point, so a retry with the same key resumes there.
var (
	// ErrPaymentUnavailable means Stripe's answer was lost or was not
	// definitive (network failure, timeout, Stripe 5xx or 429, or Stripe
	// still busy with the same idempotency key). Whether the charge exists is
	// unknown until a retry asks again with the same Stripe idempotency key.
	ErrPaymentUnavailable = errors.New("payment processor unavailable")

	// ErrSimulatedFailure is the failure that raise_error asks for.
	ErrSimulatedFailure = errors.New("simulated failure requested with raise_error")
)

// Params are a ride request's parameters, stored on its idempotency key.
type Params struct {
	OriginLat float64 `json:"origin_lat"`
	OriginLon float64 `json:"origin_lon"`
	TargetLat float64 `json:"target_lat"`
	TargetLon float64 `json:"target_lon"`
}

// Request is one request to create a ride.
type Request struct {
	// IdempotencyKey is the client's key.
	IdempotencyKey string

	// Known is the key as read by Authenticate, if it exists.
	Known *idempotency.KnownKey

	// OriginIP is the client's address, for the audit record.
	OriginIP netip.Addr

	Params Params

	// RaiseError makes the request fail after the ride is created and
	// before the charge. It is not stored: a retry without it succeeds.
	RaiseError bool

	User *db.User
}

// CreatorConfig configures a Creator. Zero fields take their defaults.
type CreatorConfig struct {
	// AuthMode is how Authenticate reads a request's credential. Zero means
	// AuthModeAPIKey: the demo mode must be asked for by name.
	AuthMode AuthMode

	// Logger receives log lines. Nil discards them.
	Logger *slog.Logger

	// StripeIdempotencyWindow is how long Stripe remembers an idempotency
	// key. A charge resumed later than this after its key was created first
	// looks for a charge made earlier for the key, rather than risk a second
	// one. Zero means StripeIdempotencyWindowDefault.
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

// Creator creates rides. It is safe for concurrent use.
type Creator struct {
	config  *CreatorConfig
	engine  *idempotency.Engine
	exec    db.Executor
	logger  *slog.Logger
	queries *db.Queries
	stripe  *stripeclient.Client
}

// NewCreator returns a Creator that runs its phases on engine, reads on
// exec, and charges through stripe. A nil config means every default.
func NewCreator(exec db.Executor, engine *idempotency.Engine, stripe *stripeclient.Client, config *CreatorConfig) (*Creator, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("ride creator: %w", err)
	}
	return &Creator{config: config, engine: engine, exec: exec, logger: config.Logger, queries: db.New(), stripe: stripe}, nil
}

// Engine is the idempotency engine the creator runs its phases on.
func (c *Creator) Engine() *idempotency.Engine {
	return c.engine
}

// Create runs the request to its definitive response, resuming from wherever
// an earlier attempt with the same key stopped.
func (c *Creator) Create(ctx context.Context, req *Request) (*idempotency.Response, error) {
	params, err := json.Marshal(req.Params)
	if err != nil {
		return nil, fmt.Errorf("marshaling params: %w", err)
	}
	return c.execute(ctx, req, params, false)
}

// Complete drives an abandoned key to its response, as its user, with its
// stored parameters: what the completer does with each key it finds. It
// only resumes: a key deleted meanwhile (by the reaper) is not started over,
// and Complete returns idempotency.ErrKeyNotFound.
func (c *Creator) Complete(ctx context.Context, key *db.IdempotencyKey) (*idempotency.Response, error) {
	var params Params
	if err := json.Unmarshal(key.RequestParams, &params); err != nil {
		return nil, fmt.Errorf("decoding stored params of key %d: %w", key.ID, err)
	}
	user, err := c.queries.UserGetByID(ctx, c.exec, key.UserID)
	if err != nil {
		return nil, fmt.Errorf("getting user %d: %w", key.UserID, err)
	}
	return c.execute(ctx, &Request{
		IdempotencyKey: key.IdempotencyKey,
		OriginIP:       netip.AddrFrom4([4]byte{127, 0, 0, 1}), // as the original's completer
		Params:         params,
		User:           user,
	}, key.RequestParams, true)
}

// execute runs the workflow for req, whose parameters are params as JSON.
func (c *Creator) execute(ctx context.Context, req *Request, params json.RawMessage, resumeOnly bool) (*idempotency.Response, error) {
	w := &workflow{creator: c, req: req}
	return c.engine.Execute(ctx, &idempotency.Request{
		Key:        req.IdempotencyKey,
		Known:      req.Known,
		Method:     RequestMethod,
		Params:     params,
		Path:       RequestPath,
		ResumeOnly: resumeOnly,
		UserID:     req.User.ID,
	}, &idempotency.Workflow{
		Start: w.createRide,
		Steps: map[string]idempotency.StepFunc{
			RecoveryPointRideCreated:   w.charge,
			RecoveryPointChargeCreated: w.finishFromChargeCreated,
		},
	})
}

// workflow holds one request's state across its phases.
type workflow struct {
	creator *Creator
	req     *Request
	ride    *db.Ride // once created or read
}

// createRide is the phase at started.
func (w *workflow) createRide(ctx context.Context, tx pgx.Tx, key *db.IdempotencyKey) (idempotency.Result, error) {
	queries := w.creator.queries
	ride, err := queries.RideInsert(ctx, tx, &db.RideInsertParams{
		IdempotencyKeyID: &key.ID,
		OriginLat:        w.req.Params.OriginLat,
		OriginLon:        w.req.Params.OriginLon,
		TargetLat:        w.req.Params.TargetLat,
		TargetLon:        w.req.Params.TargetLon,
		UserID:           key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("inserting ride: %w", err)
	}
	err = queries.AuditRecordInsert(ctx, tx, &db.AuditRecordInsertParams{
		Action:       AuditActionRideCreated,
		Data:         key.RequestParams,
		OriginIP:     w.req.OriginIP,
		ResourceID:   ride.ID,
		ResourceType: "ride",
		UserID:       key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("inserting audit record: %w", err)
	}
	w.ride = ride
	return idempotency.RecoveryPoint(RecoveryPointRideCreated), nil
}

// charge is the step at ride_created: the Stripe call, with no transaction
// open, then one phase that records its outcome.
func (w *workflow) charge(ctx context.Context, run *idempotency.Run) error {
	key := run.Key()
	if err := w.loadRide(ctx, key); err != nil {
		return err
	}
	if w.req.RaiseError {
		return ErrSimulatedFailure
	}

	chargeID, err := w.findOrCreateCharge(ctx, key)
	if err != nil {
		outcome, message := stripeclient.Classify(err)
		switch outcome {
		case stripeclient.OutcomeDeclined:
			return run.AtomicPhase(ctx, finishWith(problem.New(http.StatusPaymentRequired, "card-declined",
				"Error from payment processor: "+message)))
		case stripeclient.OutcomeRejected:
			w.creator.logger.ErrorContext(ctx, "rides: Stripe rejected charge", slog.Int64("idempotency_key_id", key.ID), slog.String("error", err.Error()))
			return run.AtomicPhase(ctx, finishWith(problem.New(http.StatusServiceUnavailable, "payment-rejected",
				"Error from payment processor. Please contact support.")))
		default:
			return fmt.Errorf("%w: %w", ErrPaymentUnavailable, err)
		}
	}

	return run.AtomicPhase(ctx, func(ctx context.Context, tx pgx.Tx, key *db.IdempotencyKey) (idempotency.Result, error) {
		ride, err := w.creator.queries.RideSetStripeChargeID(ctx, tx, &db.RideSetStripeChargeIDParams{
			ID:             w.ride.ID,
			StripeChargeID: &chargeID,
		})
		if err != nil {
			return nil, fmt.Errorf("recording charge on ride: %w", err)
		}
		return w.finishRide(ctx, tx, ride)
	})
}

// findOrCreateCharge charges the customer with the key's Stripe idempotency
// key. Past Stripe's idempotency window the key no longer protects against a
// second charge, so it first looks for a charge made for this key earlier;
// a declined one is returned as the card error it was.
func (w *workflow) findOrCreateCharge(ctx context.Context, key *db.IdempotencyKey) (string, error) {
	stripeKey := StripeIdempotencyKey(key)
	customer := w.req.User.StripeCustomerID
	if key.LockedAt != nil && key.LockedAt.Sub(key.CreatedAt) > w.creator.config.StripeIdempotencyWindow {
		existing, err := w.creator.stripe.ChargeFind(ctx, customer, MetadataIdempotencyKey, stripeKey)
		if err != nil {
			return "", err
		}
		if existing != nil {
			w.creator.logger.InfoContext(ctx, "rides: found charge made before Stripe's idempotency window closed",
				slog.Int64("idempotency_key_id", key.ID), slog.String("stripe_charge_id", existing.ID))
			if existing.Status == stripe.ChargeStatusFailed {
				// Declined: the card error Stripe would have replayed.
				return "", &stripe.Error{
					ChargeID:       existing.ID,
					Code:           stripe.ErrorCode(existing.FailureCode),
					HTTPStatusCode: http.StatusPaymentRequired,
					Msg:            existing.FailureMessage,
					Type:           stripe.ErrorTypeCard,
				}
			}
			return existing.ID, nil
		}
	}
	charge, err := w.creator.stripe.ChargeCreate(ctx, NewChargeParams(customer, key, w.ride.ID))
	if err != nil {
		return "", err
	}
	return charge.ID, nil
}

// NewChargeParams returns the charge of ride rideID, made for key: $20 to
// customer, with the key's Stripe idempotency key, and metadata naming the
// key and the ride.
func NewChargeParams(customer string, key *db.IdempotencyKey, rideID int64) *stripeclient.ChargeParams {
	stripeKey := StripeIdempotencyKey(key)
	return &stripeclient.ChargeParams{
		Amount:         ChargeAmount,
		Currency:       ChargeCurrency,
		Customer:       customer,
		Description:    "Charge for ride " + strconv.FormatInt(rideID, 10),
		IdempotencyKey: stripeKey,
		Metadata: map[string]string{
			MetadataIdempotencyKey:   stripeKey,
			MetadataIdempotencyKeyID: strconv.FormatInt(key.ID, 10),
			MetadataRideID:           strconv.FormatInt(rideID, 10),
		},
	}
}

// Metadata keys on every charge, so that a charge can be traced to its
// request and found again.
const (
	MetadataIdempotencyKey   = "idempotency_key"
	MetadataIdempotencyKeyID = "idempotency_key_id"
	MetadataRideID           = "ride_id"
)

// StripeIdempotencyKey is the idempotency key sent to Stripe for key's
// charge: stable for the key, unique across databases.
func StripeIdempotencyKey(key *db.IdempotencyKey) string {
	return "rocket-rides-" + key.StripeIdempotencyKey.String()
}

// finishFromChargeCreated is the step at charge_created, where the original
// stopped between recording the charge and staging the receipt.
func (w *workflow) finishFromChargeCreated(ctx context.Context, run *idempotency.Run) error {
	return run.AtomicPhase(ctx, func(ctx context.Context, tx pgx.Tx, key *db.IdempotencyKey) (idempotency.Result, error) {
		ride, err := w.creator.queries.RideGetByIdempotencyKeyID(ctx, tx, &key.ID)
		if err != nil {
			return nil, fmt.Errorf("getting ride of key %d at charge_created: %w", key.ID, err)
		}
		return w.finishRide(ctx, tx, ride)
	})
}

// finishRide stages the receipt job and returns the 201 response.
func (w *workflow) finishRide(ctx context.Context, tx pgx.Tx, ride *db.Ride) (idempotency.Result, error) {
	args, err := json.Marshal(&ReceiptArgs{
		Amount:   ChargeAmount,
		Currency: ChargeCurrency,
		RideID:   ride.ID,
		UserID:   ride.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("marshaling receipt job args: %w", err)
	}
	err = w.creator.queries.StagedJobInsert(ctx, tx, &db.StagedJobInsertParams{JobName: JobNameSendRideReceipt, JobArgs: args})
	if err != nil {
		return nil, fmt.Errorf("staging receipt job: %w", err)
	}
	return idempotency.Finish(http.StatusCreated, NewCreatedBody(ride)), nil
}

// loadRide reads the key's ride when the request resumed at ride_created.
// The ride createRide kept is reused only if it is this key's: if the key
// phase that inserted it rolled back and its retry found the key inserted
// meanwhile by another request, that ride never existed.
func (w *workflow) loadRide(ctx context.Context, key *db.IdempotencyKey) error {
	if w.ride != nil && w.ride.IdempotencyKeyID != nil && *w.ride.IdempotencyKeyID == key.ID {
		return nil
	}
	ride, err := w.creator.queries.RideGetByIdempotencyKeyID(ctx, w.creator.exec, &key.ID)
	if err != nil {
		return fmt.Errorf("getting ride of key %d at ride_created: %w", key.ID, err)
	}
	w.ride = ride
	return nil
}

// finishWith returns a phase that finishes the key with a problem response.
func finishWith(details *problem.Details) idempotency.PhaseFunc {
	return func(context.Context, pgx.Tx, *db.IdempotencyKey) (idempotency.Result, error) {
		return idempotency.Finish(details.Status, details), nil
	}
}

// CreatedBody is the body of a 201 response.
type CreatedBody struct {
	Message string    `json:"message"`
	Ride    *RideBody `json:"ride"`
}

// RideBody is a ride as the API shows it.
type RideBody struct {
	CreatedAt      time.Time `json:"created_at"`
	ID             int64     `json:"id"`
	OriginLat      float64   `json:"origin_lat"`
	OriginLon      float64   `json:"origin_lon"`
	StripeChargeID *string   `json:"stripe_charge_id"`
	TargetLat      float64   `json:"target_lat"`
	TargetLon      float64   `json:"target_lon"`
}

// NewCreatedBody returns the body of the 201 response for ride.
func NewCreatedBody(ride *db.Ride) *CreatedBody {
	return &CreatedBody{Message: MessageOK, Ride: &RideBody{
		CreatedAt:      ride.CreatedAt,
		ID:             ride.ID,
		OriginLat:      ride.OriginLat,
		OriginLon:      ride.OriginLon,
		StripeChargeID: ride.StripeChargeID,
		TargetLat:      ride.TargetLat,
		TargetLon:      ride.TargetLon,
	}}
}
