package rides

import (
	"fmt"

	"github.com/riverqueue/river"
)

// ReceiptArgs are the args of a send_ride_receipt job: the JSON that a ride's
// last phase stages in staged_jobs, and the River job type the enqueuer
// inserts and jobs.ReceiptWorker works. It is declared once, here, where the
// job is staged.
//
// The job is unique by its args, which a ride determines: while River keeps
// a job for a ride's receipt (queued, running, or completed within River's
// retention of completed jobs, 24 hours by default), inserting the same
// receipt again inserts nothing. A receipt staged or enqueued twice is
// therefore sent once. Uniqueness stops a second insert, not a second run:
// River runs a job at least once, so a worker that dies after sending and
// before River records the job as completed sends again when River rescues
// the job. A Mailer that talks to a real provider should pass it a key
// derived from the ride id if the provider deduplicates.
type ReceiptArgs struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	RideID   int64  `json:"ride_id"`
	UserID   int64  `json:"user_id"`
}

// InsertOpts makes receipts unique by args.
func (ReceiptArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Kind is the staged job's name, JobNameSendRideReceipt.
func (ReceiptArgs) Kind() string { return JobNameSendRideReceipt }

// Validate reports args that name no ride or no user. Such args decode fine
// from {}, and would all be the same unique job.
func (a ReceiptArgs) Validate() error {
	if a.RideID <= 0 || a.UserID <= 0 {
		return fmt.Errorf("receipt args need a ride_id and a user_id (got ride_id=%d user_id=%d)", a.RideID, a.UserID)
	}
	return nil
}

// JobNameSendCancellationReceipt is the staged job the cancel workflow's
// finishing phase stages.
const JobNameSendCancellationReceipt = "send_cancellation_receipt"

// CancellationReceiptArgs are the args of a send_cancellation_receipt job:
// the JSON the cancel workflow's finishing phase stages in staged_jobs, and
// the River job type the enqueuer inserts and the receipt worker works.
// Declared once, here, where the job is staged. Unique by args as
// ReceiptArgs, with the same at-least-once caveat: a ride is cancelled once,
// so its cancellation receipt is one unique job.
type CancellationReceiptArgs struct {
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	RideID         int64  `json:"ride_id"`
	StripeRefundID string `json:"stripe_refund_id"`
	UserID         int64  `json:"user_id"`
}

// InsertOpts makes cancellation receipts unique by args.
func (CancellationReceiptArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Kind is the staged job's name, JobNameSendCancellationReceipt.
func (CancellationReceiptArgs) Kind() string { return JobNameSendCancellationReceipt }

// Validate reports args that name no ride, no user or no refund.
func (a CancellationReceiptArgs) Validate() error {
	if a.RideID <= 0 || a.UserID <= 0 || a.StripeRefundID == "" {
		return fmt.Errorf("cancellation receipt args need a ride_id, a user_id and a stripe_refund_id (got ride_id=%d user_id=%d stripe_refund_id=%q)",
			a.RideID, a.UserID, a.StripeRefundID)
	}
	return nil
}
