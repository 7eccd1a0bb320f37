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

	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// WorkflowCreate is the ride workflow's registered name, stored on its keys.
const WorkflowCreate = "POST /rides"

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

// Create runs the request to its definitive response, resuming from wherever
// an earlier attempt with the same key stopped.
func (c *Creator) Create(ctx context.Context, req *Request) (*idempotency.Response, error) {
	params, err := json.Marshal(req.Params)
	if err != nil {
		return nil, fmt.Errorf("marshaling params: %w", err)
	}
	w := &workflow{creator: c, req: req}
	return c.engine.Execute(ctx, &idempotency.Request{
		Key:      req.IdempotencyKey,
		Known:    req.Known,
		Method:   RequestMethod,
		Params:   params,
		Path:     RequestPath,
		UserID:   req.User.ID,
		Workflow: WorkflowCreate,
	}, w.phases())
}

// createWorkflow is the ride workflow as the engine registers it: the
// completer restores a request from its key's stored parameters and user.
func (c *Creator) createWorkflow() *idempotency.Workflow {
	return &idempotency.Workflow{
		Name:           WorkflowCreate,
		RecoveryPoints: []string{RecoveryPointRideCreated, RecoveryPointChargeCreated},
		Restore: func(ctx context.Context, key *db.IdempotencyKey) (*idempotency.Phases, error) {
			var params Params
			if err := json.Unmarshal(key.RequestParams, &params); err != nil {
				return nil, fmt.Errorf("decoding stored params: %w", err)
			}
			user, err := c.queries.UserGetByID(ctx, c.exec, key.UserID)
			if err != nil {
				return nil, fmt.Errorf("getting user %d: %w", key.UserID, err)
			}
			w := &workflow{creator: c, req: &Request{
				IdempotencyKey: key.IdempotencyKey,
				OriginIP:       netip.AddrFrom4([4]byte{127, 0, 0, 1}), // as the original's completer
				Params:         params,
				User:           user,
			}}
			return w.phases(), nil
		},
	}
}

// workflow holds one ride request's state across its phases.
type workflow struct {
	creator *Creator
	req     *Request
	ride    *db.Ride // once created or read
}

func (w *workflow) phases() *idempotency.Phases {
	return &idempotency.Phases{
		Start: w.createRide,
		Steps: map[string]idempotency.StepFunc{
			RecoveryPointRideCreated:   w.charge,
			RecoveryPointChargeCreated: w.finishFromChargeCreated,
		},
	}
}

// createRide is the phase at started: the ride and its audit record, in
// one statement that finds the key by its user and value, because with a
// new key it is sent in the round trip that inserts the key. The ride it
// returns is filled once the phase commits.
func (w *workflow) createRide(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
	ride, err := w.creator.queries.RideInsertForKey(ctx, tx, &db.RideInsertForKeyParams{
		Action:         AuditActionRideCreated,
		Data:           key.RequestParams,
		IdempotencyKey: key.IdempotencyKey,
		OriginIP:       w.req.OriginIP,
		OriginLat:      w.req.Params.OriginLat,
		OriginLon:      w.req.Params.OriginLon,
		TargetLat:      w.req.Params.TargetLat,
		TargetLon:      w.req.Params.TargetLon,
		UserID:         key.UserID,
	})
	if err != nil {
		return nil, fmt.Errorf("inserting ride: %w", err)
	}
	w.ride = (*db.Ride)(ride)
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

	charge, err := idempotency.CallForeign(ctx, run, w.chargeCall(key))
	if err != nil {
		if !errors.Is(err, idempotency.ErrForeignDefinitive) {
			return fmt.Errorf("%w: %w", ErrPaymentUnavailable, err)
		}
		if outcome, message := stripeclient.Classify(err); outcome == stripeclient.OutcomeDeclined {
			return run.AtomicPhase(ctx, finishWith(problem.New(http.StatusPaymentRequired, "card-declined",
				"Error from payment processor: "+message)))
		}
		w.creator.logger.ErrorContext(ctx, "rides: Stripe rejected charge", slog.Int64("idempotency_key_id", key.ID), slog.String("error", err.Error()))
		return run.AtomicPhase(ctx, finishWith(problem.New(http.StatusServiceUnavailable, "payment-rejected",
			"Error from payment processor. Please contact support.")))
	}
	chargeID := charge.ID

	// One round trip: the response is the ride as read with its charge id,
	// not read back.
	return run.AtomicPhase(ctx, func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
		_, err := w.creator.queries.RideSetStripeChargeID(ctx, tx, &db.RideSetStripeChargeIDParams{
			ID:             w.ride.ID,
			StripeChargeID: &chargeID,
		})
		if err != nil {
			return nil, fmt.Errorf("recording charge on ride: %w", err)
		}
		ride := *w.ride
		ride.StripeChargeID = &chargeID
		return w.finishRide(ctx, tx, &ride)
	})
}

// chargeCall is the charge of the key's ride, with the key's Stripe
// idempotency key. Past Stripe's idempotency window the key no longer
// protects against a second charge, so CallForeign first looks for a charge
// made for this key earlier; a declined one is returned as the card error it
// was.
func (w *workflow) chargeCall(key *db.IdempotencyKey) *idempotency.ForeignCall[*stripe.Charge] {
	customer := w.req.User.StripeCustomerID
	return &idempotency.ForeignCall[*stripe.Charge]{
		Name:           "charge",
		IdempotencyKey: StripeIdempotencyKey(key),
		Do: func(ctx context.Context, _ string) (*stripe.Charge, error) {
			return w.creator.stripe.ChargeCreate(ctx, NewChargeParams(customer, key, w.ride.ID))
		},
		Find: func(ctx context.Context, stripeKey string) (*stripe.Charge, bool, error) {
			existing, err := w.creator.stripe.ChargeFind(ctx, customer, MetadataIdempotencyKey, stripeKey)
			if err != nil || existing == nil {
				return nil, false, err
			}
			w.creator.logger.InfoContext(ctx, "rides: found charge made before Stripe's idempotency window closed",
				slog.Int64("idempotency_key_id", key.ID), slog.String("stripe_charge_id", existing.ID))
			if existing.Status == stripe.ChargeStatusFailed {
				// Declined: the card error Stripe would have replayed.
				return nil, false, &stripe.Error{
					ChargeID:       existing.ID,
					Code:           stripe.ErrorCode(existing.FailureCode),
					HTTPStatusCode: http.StatusPaymentRequired,
					Msg:            existing.FailureMessage,
					Type:           stripe.ErrorTypeCard,
				}
			}
			return existing, true, nil
		},
		Classify: classifyStripe,
		Window:   w.creator.config.StripeIdempotencyWindow,
	}
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

// finishFromChargeCreated is the step at charge_created, where the original
// stopped between recording the charge and staging the receipt. It reads
// the ride under the key's lock (a Flush: two round trips, on a path only
// old keys take).
func (w *workflow) finishFromChargeCreated(ctx context.Context, run *idempotency.Run) error {
	return run.AtomicPhase(ctx, func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
		ride, err := w.creator.queries.RideGetByIdempotencyKeyID(ctx, tx, &key.ID)
		if err == nil {
			err = tx.Flush(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("getting ride of key %d at charge_created: %w", key.ID, err)
		}
		return w.finishRide(ctx, tx, ride)
	})
}

// finishRide stages the receipt job and returns the 201 response.
func (w *workflow) finishRide(ctx context.Context, tx *db.Pipeline, ride *db.Ride) (idempotency.Result, error) {
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

// CreatedBody is the body of a 201 response.
type CreatedBody struct {
	Message string    `json:"message"`
	Ride    *RideBody `json:"ride"`
}

// NewCreatedBody returns the body of the 201 response for ride.
func NewCreatedBody(ride *db.Ride) *CreatedBody {
	return &CreatedBody{Message: MessageOK, Ride: NewRideBody(ride)}
}
