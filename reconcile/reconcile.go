// Package reconcile compares the database with Stripe's charges and reports
// every difference: the operator's check that every ride was charged exactly
// once, and that nothing was charged without a ride.
//
// A run reads in three passes, each in batches, so that it works on any
// size: the idempotency keys and the rides (keyset pagination by id), then
// every charge on Stripe (Stripe's own pagination, newest first). The
// database is read before Stripe on purpose: a charge is always created on
// Stripe before a ride records it, so a ride that the database pass saw
// charged has its charge on Stripe by the time Stripe is listed. A request
// still running shows up as a pending ride or a pending charge, counted but
// not a problem.
//
// It keeps in memory one small entry per charged ride, per ride without a
// charge whose key is unfinished or gone, and per Stripe idempotency key
// with a succeeded charge.
package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// BatchSizeDefault is how many rows each database query of a run reads.
const BatchSizeDefault = 1000

// MaxExamples is how many example ids a Problem keeps.
const MaxExamples = 10

// Reconciler compares the database with Stripe.
type Reconciler struct {
	batchSize int
	exec      db.DBTX
	logger    *slog.Logger
	queries   *db.Queries
	stripe    *stripeclient.Client
}

// New returns a Reconciler that reads the database on exec and the charges
// through stripe. A nil logger discards its log lines.
func New(exec db.DBTX, stripe *stripeclient.Client, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{batchSize: BatchSizeDefault, exec: exec, logger: logger, queries: db.New(), stripe: stripe}
}

// Problem is one kind of difference between the database and Stripe: how
// many were found, and the first MaxExamples of them.
type Problem struct {
	// Count is how many were found.
	Count int

	// Examples identify the first MaxExamples found.
	Examples []string
}

func (p *Problem) add(example string) {
	p.Count++
	if len(p.Examples) < MaxExamples {
		p.Examples = append(p.Examples, example)
	}
}

// Report is what a run found. The counts describe both sides; the Problems
// are differences that should never happen, and any of them makes the
// report not OK.
type Report struct {
	// Keys is how many idempotency keys the database holds.
	Keys int

	// KeysFinished is how many keys hold their response.
	KeysFinished int

	// KeysByStatus counts the finished keys by their response's status.
	KeysByStatus map[int32]int

	// KeysUnfinished is how many keys have no response yet: their request
	// is running, or a retry or the completer will finish it.
	KeysUnfinished int

	// Rides is how many rides the database holds.
	Rides int

	// RidesCharged is how many rides record a charge.
	RidesCharged int

	// RidesUnchargedKeyUnfinished is how many rides have no charge yet and
	// a key that is not finished: in progress, or recoverable.
	RidesUnchargedKeyUnfinished int

	// RidesUnchargedKeyFailed is how many rides have no charge because
	// their request failed for good: the key finished with another status
	// than 201 (402 declined, 503 rejected), or the key is gone (reaped)
	// but Stripe holds the ride's declined charge. Expected.
	RidesUnchargedKeyFailed int

	// Charges is how many charges Stripe holds, whatever their status.
	Charges int

	// ChargesFailed is how many of them were declined. A declined charge
	// without a ride is no problem.
	ChargesFailed int

	// ChargesPending is how many succeeded charges no ride records yet,
	// whose ride (by metadata) waits for its unfinished key to record it.
	ChargesPending int

	// ChargesSucceeded is how many charges went through.
	ChargesSucceeded int

	// ChargesWithoutRide are succeeded charges that no ride records and
	// no unfinished ride is waiting for; examples are charge ids.
	ChargesWithoutRide Problem

	// DoubleCharges are Stripe idempotency keys (metadata idempotency_key)
	// with more than one succeeded charge; examples are those keys.
	DoubleCharges Problem

	// KeysFinishedWithoutCharge are keys that answered 201 but have no ride,
	// or whose ride records no charge; examples are key ids.
	KeysFinishedWithoutCharge Problem

	// RideChargesDiffering are rides whose charge on Stripe is not the
	// ride's: wrong amount, currency, customer or ride, or not succeeded;
	// examples name the ride and the difference.
	RideChargesDiffering Problem

	// RideChargesMissing are rides whose charge Stripe does not have;
	// examples name the ride and the charge.
	RideChargesMissing Problem

	// RidesChargedKeyUnfinished are rides that record a charge while their
	// key is not finished: the charge and the response are recorded in one
	// transaction, so this never happens; examples are ride ids.
	RidesChargedKeyUnfinished Problem

	// RidesUnchargedWithoutKey are rides with no charge, no key (it was
	// reaped unfinished) and no declined charge on Stripe: requests that
	// were never completed; examples are ride ids.
	RidesUnchargedWithoutKey Problem
}

// RidesUncharged is how many rides record no charge, whatever the reason.
func (r *Report) RidesUncharged() int {
	return r.Rides - r.RidesCharged
}

// labeledProblem is a Problem of a Report with its label.
type labeledProblem struct {
	label   string
	problem *Problem
}

// problems lists every Problem with its label, in the order Write prints
// them.
func (r *Report) problems() []labeledProblem {
	return []labeledProblem{
		{"double charges (idempotency keys charged twice)", &r.DoubleCharges},
		{"charges without a ride", &r.ChargesWithoutRide},
		{"rides whose charge is missing on Stripe", &r.RideChargesMissing},
		{"rides whose charge differs on Stripe", &r.RideChargesDiffering},
		{"rides charged with their key unfinished", &r.RidesChargedKeyUnfinished},
		{"keys finished 201 without a charged ride", &r.KeysFinishedWithoutCharge},
		{"rides without a charge or a key", &r.RidesUnchargedWithoutKey},
	}
}

// OK reports whether the run found no problem.
func (r *Report) OK() bool {
	for _, p := range r.problems() {
		if p.problem.Count > 0 {
			return false
		}
	}
	return true
}

// Write prints the report, one line per figure, problems last, each with its
// examples, and a verdict.
func (r *Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(label string, value any) {
		fmt.Fprintf(tw, "%s:\t%v\n", label, value)
	}
	line("keys", r.Keys)
	line("keys finished", fmt.Sprintf("%d (%s)", r.KeysFinished, formatStatuses(r.KeysByStatus)))
	line("keys unfinished (in progress or recoverable)", r.KeysUnfinished)
	line("rides", r.Rides)
	line("rides charged", r.RidesCharged)
	line("rides without a charge", r.RidesUncharged())
	line("rides without a charge, key unfinished", r.RidesUnchargedKeyUnfinished)
	line("rides without a charge, declined or rejected", r.RidesUnchargedKeyFailed)
	line("stripe charges", r.Charges)
	line("stripe charges succeeded", r.ChargesSucceeded)
	line("stripe charges declined", r.ChargesFailed)
	line("stripe charges not yet recorded (key unfinished)", r.ChargesPending)
	for _, p := range r.problems() {
		value := strconv.Itoa(p.problem.Count)
		if p.problem.Count > 0 {
			value += " FAIL (" + strings.Join(p.problem.Examples, ", ")
			if p.problem.Count > len(p.problem.Examples) {
				value += ", …"
			}
			value += ")"
		}
		line(p.label, value)
	}
	verdict := "OK: the database and Stripe agree"
	if !r.OK() {
		verdict = "FAIL: the database and Stripe differ"
	}
	line("reconcile", verdict)
	return tw.Flush()
}

// formatStatuses formats counts by status as "201: 3, 402: 1".
func formatStatuses(byStatus map[int32]int) string {
	if len(byStatus) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(byStatus))
	for _, status := range slices.Sorted(maps.Keys(byStatus)) {
		parts = append(parts, fmt.Sprintf("%d: %d", status, byStatus[status]))
	}
	return strings.Join(parts, ", ")
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
	return paginate(ctx, r.batchSize, func(afterID int64) ([]*db.IdempotencyKeyListWithRideChargeRow, error) {
		page, err := r.queries.IdempotencyKeyListWithRideCharge(ctx, r.exec, &db.IdempotencyKeyListWithRideChargeParams{AfterID: afterID, Max: int32(r.batchSize)})
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
	return paginate(ctx, r.batchSize, func(afterID int64) ([]*db.RideListWithCustomerAndKeyRow, error) {
		page, err := r.queries.RideListWithCustomerAndKey(ctx, r.exec, &db.RideListWithCustomerAndKeyParams{AfterID: afterID, Max: int32(r.batchSize)})
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
