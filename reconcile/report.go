package reconcile

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// MaxExamples is how many example ids a Problem keeps.
const MaxExamples = 10

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

	// ChargesPending is how many succeeded charges no ride recorded when
	// the rides were read, whose ride (by metadata) was waiting for its
	// unfinished key to record it, or was found waiting, or recording it,
	// by the second look at the database (see Rechecked).
	ChargesPending int

	// ChargesSucceeded is how many charges went through.
	ChargesSucceeded int

	// RidesCancelled is how many rides are cancelled: their cancellation
	// records its refund.
	RidesCancelled int

	// RidesCancellationClaimed is how many rides are claimed for
	// cancellation with no refund recorded yet: the cancel request is
	// running, or a retry or the completer will finish it. Pending, not a
	// problem.
	RidesCancellationClaimed int

	// Refunds is how many refunds Stripe holds, whatever their status.
	Refunds int

	// RefundsPending is how many refunds (succeeded or pending on Stripe)
	// no cancellation recorded when the cancellations were read, whose ride
	// was claimed for cancellation, or was found claimed or cancelled with
	// this refund by the second look at the database (see Rechecked).
	RefundsPending int

	// Rechecked is how many charges and refunds the Stripe pass found that
	// the database, as first read, did not explain, and that a second look
	// at the database, after the Stripe pass, found in flight: a ride
	// created, or a ride claimed, while the run was between its passes.
	// They are counted in ChargesPending and RefundsPending.
	Rechecked int

	// CancelledRideRefundsDiffering are cancelled rides whose refund on
	// Stripe is not the full refund of the ride's charge: another charge,
	// amount or currency, another ride, or failed; examples name the ride
	// and the difference.
	CancelledRideRefundsDiffering Problem

	// CancelledRideRefundsMissing are cancelled rides whose refund Stripe
	// does not have; examples name the ride and the refund.
	CancelledRideRefundsMissing Problem

	// ChargesRefundedTwice are charges with more than one refund that gives
	// money back (succeeded or pending); examples name the charge and the
	// count.
	ChargesRefundedTwice Problem

	// ChargesWithoutRide are succeeded charges that no ride records and
	// no unfinished ride is waiting for, on the first read of the database
	// and on the second; examples are charge ids.
	ChargesWithoutRide Problem

	// DoubleCharges are Stripe idempotency keys (metadata idempotency_key)
	// with more than one succeeded charge; examples are those keys.
	DoubleCharges Problem

	// KeysFinishedWithoutCharge are keys that answered 201 but have no ride,
	// or whose ride records no charge; examples are key ids.
	KeysFinishedWithoutCharge Problem

	// KeysFinishedWithoutCancellation are cancel keys that answered 200
	// without a cancelled ride of theirs: the refund, the cancellation and
	// the response are recorded in one transaction, so this never happens;
	// examples are key ids.
	KeysFinishedWithoutCancellation Problem

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

	// RefundsWithoutCancellation are refunds that give money back and that
	// no cancelled or claimed ride explains, on the first read of the
	// database and on the second: no cancellation of the ride the refund's
	// metadata (or charge) names, or one for another charge or with another
	// refund; examples are refund ids.
	RefundsWithoutCancellation Problem

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
		{"charges refunded twice", &r.ChargesRefundedTwice},
		{"refunds without a cancelled ride", &r.RefundsWithoutCancellation},
		{"cancelled rides whose refund is missing on Stripe", &r.CancelledRideRefundsMissing},
		{"cancelled rides whose refund differs on Stripe", &r.CancelledRideRefundsDiffering},
		{"cancel keys finished 200 without a cancelled ride", &r.KeysFinishedWithoutCancellation},
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
	line("rides cancelled", r.RidesCancelled)
	line("rides claimed for cancellation, refund not yet recorded", r.RidesCancellationClaimed)
	line("stripe refunds", r.Refunds)
	line("stripe refunds not yet recorded (claim unfinished)", r.RefundsPending)
	line("in flight between the passes (found by a second look)", r.Rechecked)
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
