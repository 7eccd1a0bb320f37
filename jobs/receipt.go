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

// Kinds of receipt.
const (
	// ReceiptKindRide is the receipt of a ride's charge.
	ReceiptKindRide = "ride"

	// ReceiptKindCancellation is the receipt of a cancelled ride's refund.
	ReceiptKindCancellation = "cancellation"
)

// Receipt is one receipt, of a ride or of its cancellation, ready to send.
type Receipt struct {
	// Amount is what the ride cost, or what its cancellation refunded, in
	// the currency's smallest unit (cents).
	Amount int64

	// Currency is the charge's currency, as Stripe names it (usd).
	Currency string

	// Email is the rider's address.
	Email string

	// Kind is ReceiptKindRide or ReceiptKindCancellation.
	Kind string

	// RideID is the ride the receipt is for.
	RideID int64

	// StripeRefundID is a cancellation's refund, "" for a ride.
	StripeRefundID string

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

// SendReceipt logs receipt at info, on one line.
func (m *LogMailer) SendReceipt(ctx context.Context, receipt *Receipt) error {
	attrs := []slog.Attr{
		slog.String("email", receipt.Email),
		slog.Int64("ride_id", receipt.RideID),
		slog.Int64("amount", receipt.Amount),
		slog.String("currency", receipt.Currency),
		slog.String("kind", receipt.Kind),
	}
	if receipt.StripeRefundID != "" {
		attrs = append(attrs, slog.String("stripe_refund_id", receipt.StripeRefundID))
	}
	m.logger.LogAttrs(ctx, slog.LevelInfo, "receipt: sent", attrs...)
	return nil
}

// receiptSender is what both receipt workers share: it looks the rider up
// and sends the receipt through its Mailer.
type receiptSender struct {
	exec     db.DBTX
	mailer   Mailer
	queries  *db.Queries
	sentFunc func()
}

// send completes receipt with the email of user userID and sends it. A
// user who does not exist cancels the job: no retry would fix it, and River
// keeps the cancelled job, with its error, for a human to see. Any other
// failure is retried, with River's backoff.
func (s *receiptSender) send(ctx context.Context, userID int64, receipt *Receipt) error {
	user, err := s.queries.UserGetByID(ctx, s.exec, userID)
	if db.IsNotFound(err) {
		return river.JobCancel(fmt.Errorf("user %d of ride %d does not exist", userID, receipt.RideID))
	}
	if err != nil {
		return fmt.Errorf("getting user %d: %w", userID, err)
	}
	receipt.Email, receipt.UserID = user.Email, userID
	if err := s.mailer.SendReceipt(ctx, receipt); err != nil {
		return fmt.Errorf("sending %s receipt of ride %d: %w", receipt.Kind, receipt.RideID, err)
	}
	if s.sentFunc != nil {
		s.sentFunc()
	}
	return nil
}

// ReceiptWorker works send_ride_receipt jobs (rides.ReceiptArgs): it looks
// the rider up and sends the ride's receipt through its Mailer.
type ReceiptWorker struct {
	river.WorkerDefaults[rides.ReceiptArgs]
	receiptSender
}

// NewReceiptWorker returns a worker that reads users on exec and sends
// ride receipts through mailer. sentFunc, if not nil, is called after each
// receipt sent, for metrics.
func NewReceiptWorker(exec db.DBTX, mailer Mailer, sentFunc func()) *ReceiptWorker {
	return &ReceiptWorker{receiptSender: receiptSender{exec: exec, mailer: mailer, queries: db.New(), sentFunc: sentFunc}}
}

// Work sends the receipt of one ride. Args that name no ride or user, and
// a user who does not exist, cancel the job: no retry would fix them.
func (w *ReceiptWorker) Work(ctx context.Context, job *river.Job[rides.ReceiptArgs]) error {
	args := job.Args
	if err := args.Validate(); err != nil {
		return river.JobCancel(err)
	}
	return w.send(ctx, args.UserID, &Receipt{
		Amount:   args.Amount,
		Currency: args.Currency,
		Kind:     ReceiptKindRide,
		RideID:   args.RideID,
		Text:     receiptText(args),
	})
}

// CancellationReceiptWorker works send_cancellation_receipt jobs
// (rides.CancellationReceiptArgs): it looks the rider up and sends the
// receipt of the ride's refund through its Mailer.
type CancellationReceiptWorker struct {
	river.WorkerDefaults[rides.CancellationReceiptArgs]
	receiptSender
}

// NewCancellationReceiptWorker returns a worker that reads users on exec
// and sends cancellation receipts through mailer. sentFunc, if not nil, is
// called after each receipt sent, for metrics.
func NewCancellationReceiptWorker(exec db.DBTX, mailer Mailer, sentFunc func()) *CancellationReceiptWorker {
	return &CancellationReceiptWorker{receiptSender: receiptSender{exec: exec, mailer: mailer, queries: db.New(), sentFunc: sentFunc}}
}

// Work sends the receipt of one cancelled ride's refund. Args that name no
// ride, user or refund, and a user who does not exist, cancel the job: no
// retry would fix them.
func (w *CancellationReceiptWorker) Work(ctx context.Context, job *river.Job[rides.CancellationReceiptArgs]) error {
	args := job.Args
	if err := args.Validate(); err != nil {
		return river.JobCancel(err)
	}
	return w.send(ctx, args.UserID, &Receipt{
		Amount:         args.Amount,
		Currency:       args.Currency,
		Kind:           ReceiptKindCancellation,
		RideID:         args.RideID,
		StripeRefundID: args.StripeRefundID,
		Text:           cancellationReceiptText(args),
	})
}

// receiptText is the receipt as the rider reads it.
func receiptText(args rides.ReceiptArgs) string {
	return fmt.Sprintf("Your Rocket Rides receipt: %s for ride %d. Thank you for riding!", receiptAmount(args.Amount, args.Currency), args.RideID)
}

// cancellationReceiptText is the cancellation's receipt as the rider reads
// it.
func cancellationReceiptText(args rides.CancellationReceiptArgs) string {
	return fmt.Sprintf("Your Rocket Rides refund: %s for cancelled ride %d (refund %s). It reaches your card in a few days.",
		receiptAmount(args.Amount, args.Currency), args.RideID, args.StripeRefundID)
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
