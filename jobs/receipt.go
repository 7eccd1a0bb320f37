package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/riverqueue/river"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/rides"
)

// Receipt is one ride receipt, ready to send.
type Receipt struct {
	// Amount is what the ride cost, in the currency's smallest unit (cents).
	Amount int64

	// Currency is the charge's currency, as Stripe names it (usd).
	Currency string

	// Email is the rider's address.
	Email string

	// RideID is the ride the receipt is for.
	RideID int64

	// Text is the receipt as the rider reads it.
	Text string

	// UserID is the rider.
	UserID int64
}

// Mailer sends receipts. ReceiptWorker retries a send that returns an
// error, with River's backoff.
type Mailer interface {
	SendReceipt(ctx context.Context, receipt *Receipt) error
}

// LogMailer is the Mailer of the demo: it writes each receipt as one log
// line instead of an email, with the receipt's facts (to whom, which ride,
// how much) and not its text, which they determine: the line stays short.
type LogMailer struct {
	logger *slog.Logger
}

// NewLogMailer returns a mailer that logs receipts to logger.
func NewLogMailer(logger *slog.Logger) *LogMailer {
	return &LogMailer{logger: logger}
}

// SendReceipt logs receipt at info.
func (m *LogMailer) SendReceipt(ctx context.Context, receipt *Receipt) error {
	m.logger.LogAttrs(ctx, slog.LevelInfo, "receipt: sent",
		slog.String("email", receipt.Email),
		slog.Int64("ride_id", receipt.RideID),
		slog.Int64("amount", receipt.Amount),
		slog.String("currency", receipt.Currency),
	)
	return nil
}

// ReceiptWorker works send_ride_receipt jobs (rides.ReceiptArgs): it looks the rider up and
// sends the receipt through its Mailer.
type ReceiptWorker struct {
	river.WorkerDefaults[rides.ReceiptArgs]

	exec     db.DBTX
	mailer   Mailer
	queries  *db.Queries
	sentFunc func()
}

// NewReceiptWorker returns a worker that reads users on exec and sends
// receipts through mailer. sentFunc, if not nil, is called after each
// receipt sent, for metrics.
func NewReceiptWorker(exec db.DBTX, mailer Mailer, sentFunc func()) *ReceiptWorker {
	return &ReceiptWorker{exec: exec, mailer: mailer, queries: db.New(), sentFunc: sentFunc}
}

// Work sends the receipt of one ride. Args that name no ride or user, and
// a user who does not exist, cancel the job: no retry would fix them, and
// River keeps the cancelled job, with its error, for a human to see.
func (w *ReceiptWorker) Work(ctx context.Context, job *river.Job[rides.ReceiptArgs]) error {
	args := job.Args
	if err := args.Validate(); err != nil {
		return river.JobCancel(err)
	}
	user, err := w.queries.UserGetByID(ctx, w.exec, args.UserID)
	if db.IsNotFound(err) {
		return river.JobCancel(fmt.Errorf("user %d of ride %d does not exist", args.UserID, args.RideID))
	}
	if err != nil {
		return fmt.Errorf("getting user %d: %w", args.UserID, err)
	}
	receipt := &Receipt{
		Amount:   args.Amount,
		Currency: args.Currency,
		Email:    user.Email,
		RideID:   args.RideID,
		Text:     receiptText(args),
		UserID:   args.UserID,
	}
	if err := w.mailer.SendReceipt(ctx, receipt); err != nil {
		return fmt.Errorf("sending receipt of ride %d: %w", args.RideID, err)
	}
	if w.sentFunc != nil {
		w.sentFunc()
	}
	return nil
}

// receiptText is the receipt as the rider reads it.
func receiptText(args rides.ReceiptArgs) string {
	return fmt.Sprintf("Your Rocket Rides receipt: %s for ride %d. Thank you for riding!", receiptAmount(args.Amount, args.Currency), args.RideID)
}

// receiptAmount writes an amount in cents of a currency with two decimals:
// $20.00, or 20.00 EUR.
func receiptAmount(amount int64, currency string) string {
	value := fmt.Sprintf("%d.%02d", amount/100, amount%100)
	if strings.EqualFold(currency, "usd") {
		return "$" + value
	}
	return value + " " + strings.ToUpper(currency)
}
