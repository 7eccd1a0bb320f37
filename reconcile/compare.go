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

	// Hooks are called between a run's passes. Tests use them to change
	// the database or Stripe at a precise moment of a run; production
	// leaves them nil.
	Hooks *Hooks

	// Logger receives the reconciler's log lines. Nil discards them.
	Logger *slog.Logger
}

// Hooks are test seams between a run's passes. Each may be nil. A hook that
// returns an error ends the run with it.
type Hooks struct {
	// AfterDatabasePass is called once the keys, the rides and the
	// cancellations have been read, before Stripe is listed: what a test
	// does here is what a live system does while a run is between its
	// passes.
	AfterDatabasePass func(ctx context.Context) error
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ReconcilerConfig) withDefaults() *ReconcilerConfig {
	var config ReconcilerConfig
	if c != nil {
		config = *c
	}
	config.BatchSize = cmp.Or(config.BatchSize, ReconcilerBatchSizeDefault)
	config.Hooks = cmp.Or(config.Hooks, &Hooks{})
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

// Reconciler compares the database with Stripe: the rides with the charges,
// the ride cancellations with the refunds.
type Reconciler struct {
	config  *ReconcilerConfig
	exec    db.DBTX
	logger  *slog.Logger
	queries *db.Queries
	stripe  *stripeclient.Client
}

// NewReconciler returns a Reconciler that reads the database on exec, and
// the charges and refunds through stripe. A nil config means every default.
func NewReconciler(exec db.DBTX, stripe *stripeclient.Client, config *ReconcilerConfig) (*Reconciler, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	return &Reconciler{config: config, exec: exec, logger: config.Logger, queries: db.New(), stripe: stripe}, nil
}

// chargedRide is a ride that records a charge, as the Stripe pass checks it.
type chargedRide struct {
	amount   int64 // of the charge on Stripe, once seen
	customer string
	id       int64
	seen     bool // Stripe has the charge
}

// cancellation is a row of ride_cancellations, as the refund pass checks
// it: a cancelled ride (refundID set) or a claim on a ride.
type cancellation struct {
	chargeID string // the ride's, or "" if it records none
	refundID string // "" for a claim
	rideID   int64
	seen     bool // Stripe has the refund of a cancelled ride
}

// run is the state of one run, between its passes.
type run struct {
	// cancelledRides are the cancelled rides, by refund id.
	cancelledRides map[string]*cancellation

	// chargedRides are the rides that record a charge, by charge id.
	chargedRides map[string]*chargedRide

	// claims are the claims on rides whose refund is not recorded yet, by
	// ride id: a refund for one of them is on its way to being recorded.
	claims map[int64]*cancellation

	// pendingRides are the rides without a charge whose key is unfinished:
	// a succeeded charge for one of them is on its way to being recorded.
	pendingRides map[int64]struct{}

	// refundsByCharge counts the refunds that move money (succeeded or
	// pending) by charge id.
	refundsByCharge map[string]int

	// report is what the run found so far.
	report *Report

	// succeededByKey counts succeeded charges by Stripe idempotency key.
	succeededByKey map[string]int

	// unexplainedCharges and unexplainedRefunds are what the Stripe pass
	// found that the database pass does not explain, in Stripe's order,
	// until the recheck looks at the database again.
	unexplainedCharges []*stripe.Charge
	unexplainedRefunds []*stripe.Refund

	// unkeyedRides are the rides with neither a charge nor a key, until a
	// declined charge on Stripe explains them.
	unkeyedRides map[int64]struct{}
}

// Run compares the database with Stripe and returns what it found. An
// error means the comparison could not be completed.
func (r *Reconciler) Run(ctx context.Context) (*Report, error) {
	state := &run{
		cancelledRides:  make(map[string]*cancellation),
		chargedRides:    make(map[string]*chargedRide),
		claims:          make(map[int64]*cancellation),
		pendingRides:    make(map[int64]struct{}),
		refundsByCharge: make(map[string]int),
		report:          &Report{KeysByStatus: make(map[int32]int)},
		succeededByKey:  make(map[string]int),
		unkeyedRides:    make(map[int64]struct{}),
	}
	if err := r.scanKeys(ctx, state); err != nil {
		return nil, err
	}
	if err := r.scanRides(ctx, state); err != nil {
		return nil, err
	}
	if err := r.scanCancellations(ctx, state); err != nil {
		return nil, err
	}
	if hook := r.config.Hooks.AfterDatabasePass; hook != nil {
		if err := hook(ctx); err != nil {
			return nil, err
		}
	}
	// Charges before refunds: a refund's charge exists before the refund,
	// so every charge a listed refund names has been listed.
	err := r.stripe.ChargeList(ctx, "", func(charge *stripe.Charge) bool {
		state.checkCharge(charge)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("reconciling Stripe charges: %w", err)
	}
	err = r.stripe.RefundList(ctx, "", func(refund *stripe.Refund) bool {
		state.checkRefund(refund)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("reconciling Stripe refunds: %w", err)
	}
	if err := r.recheckCharges(ctx, state); err != nil {
		return nil, err
	}
	if err := r.recheckRefunds(ctx, state); err != nil {
		return nil, err
	}
	state.finish()

	report := state.report
	r.logger.InfoContext(ctx, "reconcile: finished",
		slog.Bool("ok", report.OK()),
		slog.Int("num_keys", report.Keys),
		slog.Int("num_rides", report.Rides),
		slog.Int("num_charges", report.Charges),
		slog.Int("num_refunds", report.Refunds),
		slog.Int("num_rechecked", report.Rechecked),
	)
	return report, nil
}

// scanKeys counts the keys and finds those that answered 201 without a
// charged ride, and the cancels that answered 200 without a cancelled ride.
func (r *Reconciler) scanKeys(ctx context.Context, state *run) error {
	report := state.report
	return paginate(ctx, r.config.BatchSize, func(afterID int64) ([]*db.IdempotencyKeyListWithOutcomeRow, error) {
		page, err := r.queries.IdempotencyKeyListWithOutcome(ctx, r.exec, &db.IdempotencyKeyListWithOutcomeParams{AfterID: afterID, Max: int32(r.config.BatchSize)})
		if err != nil {
			return nil, fmt.Errorf("reading idempotency keys after id %d: %w", afterID, err)
		}
		return page, nil
	}, func(key *db.IdempotencyKeyListWithOutcomeRow) int64 {
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
		if key.Workflow == rides.WorkflowCancel && *key.ResponseCode == http.StatusOK && key.CancellationCancelledAt == nil {
			report.KeysFinishedWithoutCancellation.add(strconv.FormatInt(key.ID, 10))
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

// scanCancellations sorts the ride cancellations into cancelled rides and
// claims whose refund is not recorded yet.
func (r *Reconciler) scanCancellations(ctx context.Context, state *run) error {
	report := state.report
	return paginate(ctx, r.config.BatchSize, func(afterID int64) ([]*db.RideCancellationListWithRideChargeRow, error) {
		page, err := r.queries.RideCancellationListWithRideCharge(ctx, r.exec, &db.RideCancellationListWithRideChargeParams{AfterID: afterID, Max: int32(r.config.BatchSize)})
		if err != nil {
			return nil, fmt.Errorf("reading ride cancellations after id %d: %w", afterID, err)
		}
		return page, nil
	}, func(row *db.RideCancellationListWithRideChargeRow) int64 {
		c := newCancellation(row)
		if c.refundID == "" {
			report.RidesCancellationClaimed++
			state.claims[c.rideID] = c
		} else {
			report.RidesCancelled++
			state.cancelledRides[c.refundID] = c
		}
		return row.ID
	})
}

// newCancellation is row as the refund pass checks it.
func newCancellation(row *db.RideCancellationListWithRideChargeRow) *cancellation {
	c := &cancellation{rideID: row.RideID}
	if row.RideStripeChargeID != nil {
		c.chargeID = *row.RideStripeChargeID
	}
	if row.StripeRefundID != nil {
		c.refundID = *row.StripeRefundID
	}
	return c
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
		ride.amount, ride.seen = charge.Amount, true
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
	s.unexplainedCharges = append(s.unexplainedCharges, charge)
}

// checkRefund matches one Stripe refund against the cancellations.
func (s *run) checkRefund(refund *stripe.Refund) {
	report := s.report
	report.Refunds++
	chargeID := refundChargeID(refund)
	moved := refundMoved(refund)
	if moved {
		s.refundsByCharge[chargeID]++
	}

	if c, ok := s.cancelledRides[refund.ID]; ok {
		c.seen = true
		if difference := s.refundDifference(refund, c); difference != "" {
			report.CancelledRideRefundsDiffering.add(fmt.Sprintf("ride %d: %s", c.rideID, difference))
		}
		return
	}
	if !moved {
		// A refund that failed or was canceled gave nothing back.
		return
	}
	if c, ok := s.claims[s.refundRideID(refund)]; ok && c.chargeID == chargeID {
		report.RefundsPending++
		return
	}
	s.unexplainedRefunds = append(s.unexplainedRefunds, refund)
}

// refundChargeID is the id of the charge refund refunds, or "".
func refundChargeID(refund *stripe.Refund) string {
	if refund.Charge == nil {
		return ""
	}
	return refund.Charge.ID
}

// refundMoved reports whether refund gives money back, or will: a refund
// that failed or was canceled does not.
func refundMoved(refund *stripe.Refund) bool {
	return refund.Status == stripe.RefundStatusSucceeded || refund.Status == stripe.RefundStatusPending
}

// refundRideID is the ride refund is for: its metadata's ride_id or, without
// one, the ride that records its charge (0 if none does).
func (s *run) refundRideID(refund *stripe.Refund) int64 {
	if rideID, err := strconv.ParseInt(refund.Metadata[rides.MetadataRideID], 10, 64); err == nil {
		return rideID
	}
	if ride, ok := s.chargedRides[refundChargeID(refund)]; ok {
		return ride.id
	}
	return 0
}

// refundDifference says how refund is not the full refund of c's ride's
// charge, or returns "".
func (s *run) refundDifference(refund *stripe.Refund, c *cancellation) string {
	var differences []string
	if chargeID := refundChargeID(refund); chargeID != c.chargeID {
		differences = append(differences, fmt.Sprintf("charge %s, want %s", chargeID, c.chargeID))
	}
	want := int64(rides.ChargeAmount)
	if ride, ok := s.chargedRides[c.chargeID]; ok && ride.seen {
		want = ride.amount
	}
	if refund.Amount != want {
		differences = append(differences, fmt.Sprintf("amount %d, want %d", refund.Amount, want))
	}
	if string(refund.Currency) != rides.ChargeCurrency {
		differences = append(differences, fmt.Sprintf("currency %s, want %s", refund.Currency, rides.ChargeCurrency))
	}
	if !refundMoved(refund) {
		differences = append(differences, fmt.Sprintf("status %s", refund.Status))
	}
	if rideID := refund.Metadata[rides.MetadataRideID]; rideID != strconv.FormatInt(c.rideID, 10) {
		differences = append(differences, fmt.Sprintf("metadata ride_id %q", rideID))
	}
	return strings.Join(differences, ", ")
}

// recheckCharges takes a second look at the database for the succeeded
// charges that the Stripe pass found no ride for: on a live system, a ride
// created after the rides were read may have been charged before Stripe
// was listed. A charge whose ride now records it, or whose ride is now
// waiting for its unfinished key, was in flight: pending, not a problem.
// Any other (no such ride, a ride with another charge or a finished key)
// is a charge without a ride.
func (r *Reconciler) recheckCharges(ctx context.Context, state *run) error {
	report := state.report
	rideIDs := make([]int64, 0, len(state.unexplainedCharges))
	for _, charge := range state.unexplainedCharges {
		if rideID, err := strconv.ParseInt(charge.Metadata[rides.MetadataRideID], 10, 64); err == nil {
			rideIDs = append(rideIDs, rideID)
		}
	}
	found := make(map[int64]*db.RideListWithCustomerAndKeyByIDsRow)
	for batch := range slices.Chunk(rideIDs, r.config.BatchSize) {
		rows, err := r.queries.RideListWithCustomerAndKeyByIDs(ctx, r.exec, batch)
		if err != nil {
			return fmt.Errorf("reading again the rides of %d charges: %w", len(batch), err)
		}
		for _, row := range rows {
			found[row.ID] = row
		}
	}
	for _, charge := range state.unexplainedCharges {
		rideID, _ := strconv.ParseInt(charge.Metadata[rides.MetadataRideID], 10, 64)
		ride, ok := found[rideID]
		keyUnfinished := ok && ride.KeyID != nil && *ride.KeyRecoveryPoint != idempotency.RecoveryPointFinished
		switch {
		case ok && ride.StripeChargeID != nil && *ride.StripeChargeID == charge.ID:
			report.Rechecked++
			report.ChargesPending++
			difference := chargeDifference(charge, &chargedRide{customer: ride.StripeCustomerID, id: ride.ID})
			if difference != "" {
				report.RideChargesDiffering.add(fmt.Sprintf("ride %d: %s", ride.ID, difference))
			}
		case ok && ride.StripeChargeID == nil && keyUnfinished:
			report.Rechecked++
			report.ChargesPending++
		default:
			report.ChargesWithoutRide.add(charge.ID)
		}
	}
	return nil
}

// recheckRefunds takes a second look at the database for the refunds that
// the Stripe pass found no cancellation for: a ride claimed after the
// cancellations were read may have been refunded before Stripe was listed.
// A refund whose ride now holds a claim, or a cancellation recording this
// refund, for the charge refunded, was in flight: pending, not a problem.
// Any other is a refund without a cancelled ride.
func (r *Reconciler) recheckRefunds(ctx context.Context, state *run) error {
	report := state.report
	rideIDs := make([]int64, 0, len(state.unexplainedRefunds))
	for _, refund := range state.unexplainedRefunds {
		rideIDs = append(rideIDs, state.refundRideID(refund))
	}
	found := make(map[int64]*cancellation)
	for batch := range slices.Chunk(rideIDs, r.config.BatchSize) {
		rows, err := r.queries.RideCancellationListWithRideChargeByRideIDs(ctx, r.exec, batch)
		if err != nil {
			return fmt.Errorf("reading again the cancellations of %d refunds: %w", len(batch), err)
		}
		for _, row := range rows {
			found[row.RideID] = newCancellation((*db.RideCancellationListWithRideChargeRow)(row))
		}
	}
	for i, refund := range state.unexplainedRefunds {
		c, ok := found[rideIDs[i]]
		switch {
		case ok && c.chargeID == refundChargeID(refund) && (c.refundID == "" || c.refundID == refund.ID):
			report.Rechecked++
			report.RefundsPending++
			if c.refundID != "" {
				if difference := state.refundDifference(refund, c); difference != "" {
					report.CancelledRideRefundsDiffering.add(fmt.Sprintf("ride %d: %s", c.rideID, difference))
				}
			}
		default:
			report.RefundsWithoutCancellation.add(refund.ID)
		}
	}
	return nil
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
// charge never showed up, rides nothing explains, keys charged twice,
// cancelled rides whose refund never showed up, charges refunded twice.
// Each is reported in order of id, for a stable report.
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

	var unrefunded []*cancellation
	for _, c := range s.cancelledRides {
		if !c.seen {
			unrefunded = append(unrefunded, c)
		}
	}
	slices.SortFunc(unrefunded, func(a, b *cancellation) int { return cmp.Compare(a.rideID, b.rideID) })
	for _, c := range unrefunded {
		report.CancelledRideRefundsMissing.add(fmt.Sprintf("ride %d: %s", c.rideID, c.refundID))
	}

	for _, chargeID := range slices.Sorted(maps.Keys(s.refundsByCharge)) {
		if n := s.refundsByCharge[chargeID]; n > 1 {
			report.ChargesRefundedTwice.add(fmt.Sprintf("%s: %d refunds", chargeID, n))
		}
	}
}
