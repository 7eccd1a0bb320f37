// Package inspect is the support engineer's view of one request: given a
// user's email and an idempotency key, or a ride id, it gathers the key
// (workflow, recovery point, lock, runs, stored response), the ride and its
// cancellation, the charge and refunds as Stripe has them, the ride's audit
// records, and its jobs, staged or in River. `rocketrides inspect` prints
// the Report as text, or as JSON for scripts.
//
// The database is read in one REPEATABLE READ transaction that writes
// nothing, so every part of the report is from the same snapshot; Stripe is
// asked afterwards.
package inspect

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// Errors of an inspection whose subject does not exist.
var (
	ErrKeyNotFound  = errors.New("no such idempotency key")
	ErrRideNotFound = errors.New("no such ride")
	ErrUserNotFound = errors.New("no such user")
)

// Defaults of InspectorConfig.
const (
	// MaxRiverJobsDefault is the most River jobs a report lists.
	MaxRiverJobsDefault = 100
	// TimeoutDefault bounds one inspection, Stripe's calls included.
	TimeoutDefault = 30 * time.Second
)

// InspectorConfig configures an Inspector. Zero fields take their defaults.
type InspectorConfig struct {
	// LockTimeout is the engine's lock timeout, against which a key's lock
	// is judged live or stale. Zero means idempotency.LockTimeoutDefault.
	LockTimeout time.Duration

	// Logger receives the inspector's log lines. Nil discards them.
	Logger *slog.Logger

	// MaxRiverJobs is the most River jobs a report lists. Zero means
	// MaxRiverJobsDefault.
	MaxRiverJobs int

	// Timeout bounds one inspection. Zero means TimeoutDefault.
	Timeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *InspectorConfig) withDefaults() *InspectorConfig {
	var config InspectorConfig
	if c != nil {
		config = *c
	}
	config.LockTimeout = cmp.Or(config.LockTimeout, idempotency.LockTimeoutDefault)
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	config.MaxRiverJobs = cmp.Or(config.MaxRiverJobs, MaxRiverJobsDefault)
	config.Timeout = cmp.Or(config.Timeout, TimeoutDefault)
	return &config
}

// validate rejects nonsense settings.
func (c *InspectorConfig) validate() error {
	switch {
	case c.LockTimeout < 0:
		return fmt.Errorf("LockTimeout must not be negative, got %s", c.LockTimeout)
	case c.MaxRiverJobs < 0:
		return fmt.Errorf("MaxRiverJobs must not be negative, got %d", c.MaxRiverJobs)
	case c.Timeout < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Timeout must not be negative, got %s", c.Timeout)
	}
	return nil
}

// Inspector gathers reports. It is safe for concurrent use.
type Inspector struct {
	config  *InspectorConfig
	exec    db.Executor
	queries *db.Queries
	river   *river.Client[pgx.Tx]
	stripe  *stripeclient.Client
}

// NewInspector returns an inspector reading the database through exec,
// River's jobs through riverClient (an insert-only client will do), and
// Stripe through stripe. A nil stripe leaves Stripe out of every report,
// which says so. A nil config means every default.
func NewInspector(exec db.Executor, riverClient *river.Client[pgx.Tx], stripe *stripeclient.Client, config *InspectorConfig) (*Inspector, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("inspector: %w", err)
	}
	if exec == nil || riverClient == nil {
		return nil, errors.New("inspector: exec and riverClient must not be nil")
	}
	return &Inspector{config: config, exec: exec, queries: db.New(), river: riverClient, stripe: stripe}, nil
}

// ByKey reports on the idempotency key of the user with email, and on the
// ride it created or cancelled, if any. An unknown user or key is
// ErrUserNotFound or ErrKeyNotFound.
func (i *Inspector) ByKey(ctx context.Context, email, key string) (*Report, error) {
	return i.inspect(ctx, func(ctx context.Context, tx pgx.Tx, report *Report) error {
		user, err := i.queries.UserGetByEmail(ctx, tx, email)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w with email %q", ErrUserNotFound, email)
		}
		if err != nil {
			return fmt.Errorf("getting user: %w", err)
		}
		row, err := i.queries.IdempotencyKeyGetByUserIDAndKey(ctx, tx, &db.IdempotencyKeyGetByUserIDAndKeyParams{UserID: user.ID, IdempotencyKey: key})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w %q for %s", ErrKeyNotFound, key, email)
		}
		if err != nil {
			return fmt.Errorf("getting idempotency key: %w", err)
		}
		if err := i.readKey(ctx, tx, report, row.ID); err != nil {
			return err
		}
		ride, err := i.rideOfKey(ctx, tx, row.ID)
		if err != nil || ride == nil {
			return err
		}
		return i.readRide(ctx, tx, report, ride)
	})
}

// ByRide reports on the ride with id and on the key that created it, if the
// reaper has not deleted it. An unknown ride is ErrRideNotFound.
func (i *Inspector) ByRide(ctx context.Context, id int64) (*Report, error) {
	return i.inspect(ctx, func(ctx context.Context, tx pgx.Tx, report *Report) error {
		ride, err := i.queries.RideGetByID(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w with id %d", ErrRideNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("getting ride: %w", err)
		}
		if ride.IdempotencyKeyID != nil {
			if err := i.readKey(ctx, tx, report, *ride.IdempotencyKeyID); err != nil {
				return err
			}
		}
		return i.readRide(ctx, tx, report, ride)
	})
}

// inspect runs read in one REPEATABLE READ transaction, one snapshot, then
// asks Stripe.
func (i *Inspector) inspect(ctx context.Context, read func(ctx context.Context, tx pgx.Tx, report *Report) error) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, i.config.Timeout)
	defer cancel()
	report := &Report{AuditRecords: []*db.AuditRecord{}, Refunds: []*Refund{}, RiverJobs: []*RiverJob{}, StagedJobs: []*db.StagedJob{}}
	err := db.WithTx(ctx, i.exec, db.TxOptions{Isolation: pgx.RepeatableRead}, func(ctx context.Context, tx pgx.Tx) error {
		return read(ctx, tx, report)
	})
	if err != nil {
		return nil, err
	}
	i.readStripe(ctx, report)
	return report, nil
}

// rideOfKey returns the ride that key created, or else the ride it
// cancelled; nil if neither.
func (i *Inspector) rideOfKey(ctx context.Context, tx pgx.Tx, keyID int64) (*db.Ride, error) {
	ride, err := i.queries.RideGetByIdempotencyKeyID(ctx, tx, &keyID)
	if err == nil {
		return ride, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("getting ride of key: %w", err)
	}
	cancellation, err := i.queries.RideCancellationGetByIdempotencyKeyID(ctx, tx, &keyID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting cancellation of key: %w", err)
	}
	ride, err = i.queries.RideGetByID(ctx, tx, cancellation.RideID)
	if err != nil {
		return nil, fmt.Errorf("getting cancelled ride: %w", err)
	}
	return ride, nil
}

// readKey fills in the key with id and its user.
func (i *Inspector) readKey(ctx context.Context, tx pgx.Tx, report *Report, id int64) error {
	row, err := i.queries.IdempotencyKeyGetWithLockLive(ctx, tx, &db.IdempotencyKeyGetWithLockLiveParams{
		ID: id, LockTimeoutSeconds: i.config.LockTimeout.Seconds(),
	})
	if err != nil {
		return fmt.Errorf("getting idempotency key %d: %w", id, err)
	}
	report.Key = newKey(&row.IdempotencyKey, row.LockLive, row.Now)
	if err := i.readUser(ctx, tx, report, row.IdempotencyKey.UserID); err != nil {
		return err
	}
	return nil
}

// readUser fills in the user with id, unless it is there already.
func (i *Inspector) readUser(ctx context.Context, tx pgx.Tx, report *Report, id int64) error {
	if report.User != nil && report.User.ID == id {
		return nil
	}
	user, err := i.queries.UserGetByID(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("getting user %d: %w", id, err)
	}
	report.User = user
	return nil
}

// readRide fills in ride, its status, cancellation, audit records and jobs.
func (i *Inspector) readRide(ctx context.Context, tx pgx.Tx, report *Report, ride *db.Ride) error {
	if err := i.readUser(ctx, tx, report, ride.UserID); err != nil {
		return err
	}
	cancellation, err := i.queries.RideCancellationGetByRideID(ctx, tx, ride.ID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		cancellation = nil
	case err != nil:
		return fmt.Errorf("getting cancellation of ride: %w", err)
	}
	// The key that created the ride decides between declined and pending.
	var cancelledAt *time.Time
	if cancellation != nil {
		cancelledAt = cancellation.CancelledAt
	}
	var keyRecoveryPoint *string
	if ride.IdempotencyKeyID != nil {
		creatingKey, err := i.queries.IdempotencyKeyGetByID(ctx, tx, *ride.IdempotencyKeyID)
		switch {
		case err == nil:
			keyRecoveryPoint = &creatingKey.RecoveryPoint
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("getting key of ride: %w", err)
		}
	}
	report.Ride = &Ride{Ride: ride, Status: rides.RideStatus(ride, cancelledAt, keyRecoveryPoint)}
	report.Cancellation = cancellation

	audit, err := i.queries.AuditRecordListByResource(ctx, tx, &db.AuditRecordListByResourceParams{ResourceType: "ride", ResourceID: ride.ID})
	if err != nil {
		return fmt.Errorf("listing audit records: %w", err)
	}
	report.AuditRecords = append(report.AuditRecords, audit...)
	staged, err := i.queries.StagedJobListByRideID(ctx, tx, ride.ID)
	if err != nil {
		return fmt.Errorf("listing staged jobs: %w", err)
	}
	report.StagedJobs = append(report.StagedJobs, staged...)
	params := river.NewJobListParams().
		Where("args->>'ride_id' = @ride_id", river.NamedArgs{"ride_id": strconv.FormatInt(ride.ID, 10)}).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).
		First(i.config.MaxRiverJobs)
	result, err := i.river.JobListTx(ctx, tx, params)
	if err != nil {
		return fmt.Errorf("listing River jobs: %w", err)
	}
	for _, job := range result.Jobs {
		report.RiverJobs = append(report.RiverJobs, newRiverJob(job))
	}
	return nil
}

// readStripe fills in the ride's charge and its refunds as Stripe has them.
// Without a recorded charge it looks for one Stripe made for the ride (a
// request whose answer was lost). A failure of Stripe goes into the report,
// next to what the database says.
func (i *Inspector) readStripe(ctx context.Context, report *Report) {
	if report.Ride == nil {
		return
	}
	if i.stripe == nil {
		report.StripeError = "not asked: no Stripe configured"
		return
	}
	var charge *stripe.Charge
	var err error
	foundBy := ChargeFoundByRide
	if id := report.Ride.StripeChargeID; id != nil {
		charge, err = i.stripe.ChargeGet(ctx, *id)
	} else if report.User != nil {
		foundBy = ChargeFoundByMetadata
		charge, err = i.stripe.ChargeFind(ctx, report.User.StripeCustomerID, rides.MetadataRideID, strconv.FormatInt(report.Ride.ID, 10))
	}
	if err != nil {
		i.config.Logger.WarnContext(ctx, "inspect: asking Stripe failed", slog.Int64("ride_id", report.Ride.ID), slog.String("error", err.Error()))
		report.StripeError = err.Error()
		return
	}
	if charge == nil {
		return
	}
	report.Charge = newCharge(charge, foundBy)
	err = i.stripe.RefundList(ctx, charge.ID, func(refund *stripe.Refund) bool {
		report.Refunds = append(report.Refunds, newRefund(refund))
		return true
	})
	if err != nil {
		report.StripeError = err.Error()
	}
}

// rawOrNil returns raw, or nil if it is empty: JSON null, not an error.
func rawOrNil(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	return raw
}

// newRiverJob is job as a report shows it.
func newRiverJob(job *rivertype.JobRow) *RiverJob {
	j := &RiverJob{
		ID:          job.ID,
		Args:        rawOrNil(job.EncodedArgs),
		Attempt:     job.Attempt,
		CreatedAt:   job.CreatedAt,
		FinalizedAt: job.FinalizedAt,
		Kind:        job.Kind,
		MaxAttempts: job.MaxAttempts,
		Queue:       job.Queue,
		ScheduledAt: job.ScheduledAt,
		State:       string(job.State),
	}
	if n := len(job.Errors); n > 0 {
		j.LastError = job.Errors[n-1].Error
	}
	return j
}
