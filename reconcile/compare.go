package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// ReconcilerBatchSizeDefault is how many rows each database query of a run
// reads, unless ReconcilerConfig says otherwise.
const ReconcilerBatchSizeDefault = 1000

// ReconcilerConfig configures a Reconciler. Zero fields take their defaults.
type ReconcilerConfig struct {
	// BatchSize is how many rows each database query of a run reads. Zero
	// means ReconcilerBatchSizeDefault.
	BatchSize int

	// Logger receives the reconciler's log lines. Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ReconcilerConfig) withDefaults() *ReconcilerConfig {
	var config ReconcilerConfig
	if c != nil {
		config = *c
	}
	config.BatchSize = cmp.Or(config.BatchSize, ReconcilerBatchSizeDefault)
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	return &config
}

// validate rejects settings a run cannot work with.
func (c *ReconcilerConfig) validate() error {
	if c.BatchSize < 1 {
		return fmt.Errorf("BatchSize must be positive, got %d", c.BatchSize)
	}
	return nil
}

// Reconciler compares the database with Stripe.
type Reconciler struct {
	config  *ReconcilerConfig
	exec    db.DBTX
	logger  *slog.Logger
	queries *db.Queries
	stripe  *stripeclient.Client
}

// NewReconciler returns a Reconciler that reads the database on exec and the
// charges through stripe. A nil config means every default.
func NewReconciler(exec db.DBTX, stripe *stripeclient.Client, config *ReconcilerConfig) (*Reconciler, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	return &Reconciler{config: config, exec: exec, logger: config.Logger, queries: db.New(), stripe: stripe}, nil
}

// chargedRide is a ride that records a charge, as the Stripe pass checks it.
type chargedRide struct {
	customer string
	id       int64
	seen     bool // Stripe has the charge
}

// run is the state of one run, between its passes.
type run struct {
	// chargedRides are the rides that record a charge, by charge id.
	chargedRides map[string]*chargedRide

	// pendingRides are the rides without a charge whose key is unfinished:
	// a succeeded charge for one of them is on its way to being recorded.
	pendingRides map[int64]struct{}

	// report is what the run found so far.
	report *Report

	// succeededByKey counts succeeded charges by Stripe idempotency key.
	succeededByKey map[string]int

	// unkeyedRides are the rides with neither a charge nor a key, until a
	// declined charge on Stripe explains them.
	unkeyedRides map[int64]struct{}
}

// Run compares the database with Stripe and returns what it found. An
// error means the comparison could not be completed.
func (r *Reconciler) Run(ctx context.Context) (*Report, error) {
	state := &run{
		chargedRides:   make(map[string]*chargedRide),
		pendingRides:   make(map[int64]struct{}),
		report:         &Report{KeysByStatus: make(map[int32]int)},
		succeededByKey: make(map[string]int),
		unkeyedRides:   make(map[int64]struct{}),
	}
	if err := r.scanKeys(ctx, state); err != nil {
		return nil, err
	}
	if err := r.scanRides(ctx, state); err != nil {
		return nil, err
	}
	err := r.stripe.ChargeList(ctx, "", func(charge *stripe.Charge) bool {
		state.checkCharge(charge)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("reconciling Stripe charges: %w", err)
	}
	state.finish()

	report := state.report
	r.logger.InfoContext(ctx, "reconcile: finished",
		slog.Bool("ok", report.OK()),
		slog.Int("num_keys", report.Keys),
		slog.Int("num_rides", report.Rides),
		slog.Int("num_charges", report.Charges),
	)
	return report, nil
}

// scanKeys counts the keys and finds those that answered 201 without a
// charged ride.
func (r *Reconciler) scanKeys(ctx context.Context, state *run) error {
	report := state.report
	return paginate(ctx, r.config.BatchSize, func(afterID int64) ([]*db.IdempotencyKeyListWithRideChargeRow, error) {
		page, err := r.queries.IdempotencyKeyListWithRideCharge(ctx, r.exec, &db.IdempotencyKeyListWithRideChargeParams{AfterID: afterID, Max: int32(r.config.BatchSize)})
		if err != nil {
			return nil, fmt.Errorf("reading idempotency keys after id %d: %w", afterID, err)
		}
		return page, nil
	}, func(key *db.IdempotencyKeyListWithRideChargeRow) int64 {
		report.Keys++
		if key.RecoveryPoint != idempotency.RecoveryPointFinished {
			report.KeysUnfinished++
			return key.ID
		}
		report.KeysFinished++
		report.KeysByStatus[*key.ResponseCode]++
		if *key.ResponseCode == http.StatusCreated && key.RideStripeChargeID == nil {
			report.KeysFinishedWithoutCharge.add(strconv.FormatInt(key.ID, 10))
		}
		return key.ID
	})
}

// scanRides sorts the rides by their charge and their key's state.
func (r *Reconciler) scanRides(ctx context.Context, state *run) error {
	report := state.report
	return paginate(ctx, r.config.BatchSize, func(afterID int64) ([]*db.RideListWithCustomerAndKeyRow, error) {
		page, err := r.queries.RideListWithCustomerAndKey(ctx, r.exec, &db.RideListWithCustomerAndKeyParams{AfterID: afterID, Max: int32(r.config.BatchSize)})
		if err != nil {
			return nil, fmt.Errorf("reading rides after id %d: %w", afterID, err)
		}
		return page, nil
	}, func(ride *db.RideListWithCustomerAndKeyRow) int64 {
		report.Rides++
		keyFinished := ride.KeyRecoveryPoint != nil && *ride.KeyRecoveryPoint == idempotency.RecoveryPointFinished
		switch {
		case ride.StripeChargeID != nil:
			report.RidesCharged++
			state.chargedRides[*ride.StripeChargeID] = &chargedRide{customer: ride.StripeCustomerID, id: ride.ID}
			if ride.KeyID != nil && !keyFinished {
				report.RidesChargedKeyUnfinished.add(strconv.FormatInt(ride.ID, 10))
			}
		case ride.KeyID == nil:
			state.unkeyedRides[ride.ID] = struct{}{}
		case !keyFinished:
			report.RidesUnchargedKeyUnfinished++
			state.pendingRides[ride.ID] = struct{}{}
		case *ride.KeyResponseCode != http.StatusCreated:
			report.RidesUnchargedKeyFailed++
		}
		// A finished 201 key with an uncharged ride is reported by scanKeys.
		return ride.ID
	})
}

// paginate reads pages of rows after ever larger ids, calling each for every
// row (it returns the row's id), until a page comes back short.
func paginate[T any](ctx context.Context, batchSize int, page func(afterID int64) ([]T, error), each func(T) int64) error {
	var afterID int64
	for {
		rows, err := page(afterID)
		if err != nil {
			return err
		}
		for _, row := range rows {
			afterID = each(row)
		}
		if len(rows) < batchSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// checkCharge matches one Stripe charge against the rides.
func (s *run) checkCharge(charge *stripe.Charge) {
	report := s.report
	report.Charges++
	succeeded := charge.Status == stripe.ChargeStatusSucceeded
	switch {
	case succeeded:
		report.ChargesSucceeded++
		if key := charge.Metadata[rides.MetadataIdempotencyKey]; key != "" {
			s.succeededByKey[key]++
		}
	case charge.Status == stripe.ChargeStatusFailed:
		report.ChargesFailed++
	}

	if ride, ok := s.chargedRides[charge.ID]; ok {
		ride.seen = true
		if difference := chargeDifference(charge, ride); difference != "" {
			report.RideChargesDiffering.add(fmt.Sprintf("ride %d: %s", ride.id, difference))
		}
		return
	}
	rideID, _ := strconv.ParseInt(charge.Metadata[rides.MetadataRideID], 10, 64)
	if !succeeded {
		// A declined charge explains a ride whose key is gone.
		if _, ok := s.unkeyedRides[rideID]; ok {
			delete(s.unkeyedRides, rideID)
			report.RidesUnchargedKeyFailed++
		}
		return
	}
	if _, ok := s.pendingRides[rideID]; ok {
		report.ChargesPending++
		return
	}
	report.ChargesWithoutRide.add(charge.ID)
}

// chargeDifference says how charge is not what ride should have been
// charged, or returns "".
func chargeDifference(charge *stripe.Charge, ride *chargedRide) string {
	var differences []string
	if charge.Amount != rides.ChargeAmount {
		differences = append(differences, fmt.Sprintf("amount %d, want %d", charge.Amount, rides.ChargeAmount))
	}
	if string(charge.Currency) != rides.ChargeCurrency {
		differences = append(differences, fmt.Sprintf("currency %s, want %s", charge.Currency, rides.ChargeCurrency))
	}
	var customer string
	if charge.Customer != nil {
		customer = charge.Customer.ID
	}
	if customer != ride.customer {
		differences = append(differences, fmt.Sprintf("customer %s, want %s", customer, ride.customer))
	}
	if charge.Status != stripe.ChargeStatusSucceeded {
		differences = append(differences, fmt.Sprintf("status %s", charge.Status))
	}
	if rideID := charge.Metadata[rides.MetadataRideID]; rideID != strconv.FormatInt(ride.id, 10) {
		differences = append(differences, fmt.Sprintf("metadata ride_id %q", rideID))
	}
	return strings.Join(differences, ", ")
}

// finish reports what only the end of the Stripe pass reveals: rides whose
// charge never showed up, rides nothing explains, keys charged twice. Each
// is reported in order of id, for a stable report.
func (s *run) finish() {
	report := s.report

	var missing []*chargedRide
	chargeIDs := make(map[int64]string)
	for chargeID, ride := range s.chargedRides {
		if !ride.seen {
			missing = append(missing, ride)
			chargeIDs[ride.id] = chargeID
		}
	}
	slices.SortFunc(missing, func(a, b *chargedRide) int { return cmp.Compare(a.id, b.id) })
	for _, ride := range missing {
		report.RideChargesMissing.add(fmt.Sprintf("ride %d: %s", ride.id, chargeIDs[ride.id]))
	}

	for _, rideID := range slices.Sorted(maps.Keys(s.unkeyedRides)) {
		report.RidesUnchargedWithoutKey.add(strconv.FormatInt(rideID, 10))
	}

	for _, key := range slices.Sorted(maps.Keys(s.succeededByKey)) {
		if n := s.succeededByKey[key]; n > 1 {
			report.DoubleCharges.add(fmt.Sprintf("%s: %d charges", key, n))
		}
	}
}
