package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/rides"
)

// RiverMaxWorkersDefault is how many jobs a River client that works jobs
// runs at once, unless RiverClientConfig says otherwise.
const RiverMaxWorkersDefault = 10

// ReceiptArgs are the args of a send_ride_receipt River job: the JSON that
// rides stages (rides.ReceiptArgs), as a River job type.
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
type ReceiptArgs rides.ReceiptArgs

// InsertOpts makes receipts unique by args.
func (ReceiptArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Kind is the staged job's name, rides.JobNameSendRideReceipt.
func (ReceiptArgs) Kind() string { return rides.JobNameSendRideReceipt }

// validate reports args that name no ride or no user. Such args decode
// fine from {}, and would all be the same unique job.
func (a ReceiptArgs) validate() error {
	if a.RideID <= 0 || a.UserID <= 0 {
		return fmt.Errorf("receipt args need a ride_id and a user_id (got ride_id=%d user_id=%d)", a.RideID, a.UserID)
	}
	return nil
}

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
// line instead of an email.
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
		slog.String("text", receipt.Text),
	)
	return nil
}

// ReceiptWorker works send_ride_receipt jobs: it looks the rider up and
// sends the receipt through its Mailer.
type ReceiptWorker struct {
	river.WorkerDefaults[ReceiptArgs]

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
func (w *ReceiptWorker) Work(ctx context.Context, job *river.Job[ReceiptArgs]) error {
	args := job.Args
	if err := args.validate(); err != nil {
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
func receiptText(args ReceiptArgs) string {
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

// RiverClientConfig configures the River client of a process.
type RiverClientConfig struct {
	// Mailer sends receipts, in a client that works jobs. Nil means a
	// LogMailer on the client's logger.
	Mailer Mailer

	// MaxWorkers is how many jobs a client that works jobs runs at once.
	// Zero means RiverMaxWorkersDefault.
	MaxWorkers int

	// ReceiptSentFunc, if set, is called after each receipt sent, for
	// metrics.
	ReceiptSentFunc func()

	// Work makes a client that works jobs once started: it registers
	// ReceiptWorker and River's default queue. Otherwise the client only
	// inserts jobs, in transactions of the caller (InsertManyTx), and pool
	// may be nil.
	Work bool
}

// NewRiverClient returns the River client of a process, on pool. A nil
// config means an insert-only client. logger gets the receipts of the
// default mailer, and River's own lines from warn up: River's info lines
// would drown ours.
//
// The client inserts jobs of any kind, even kinds it has no worker for
// (River's SkipUnknownJobCheck): the enqueuer hands over whatever was
// staged, and a job this version does not know is for another version's
// workers, or stays in River, failing visibly, until one comes.
func NewRiverClient(pool *pgxpool.Pool, config *RiverClientConfig, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	var c RiverClientConfig
	if config != nil {
		c = *config
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	riverConfig := &river.Config{
		Logger:              slog.New(&receiptRiverLogHandler{Handler: logger.Handler(), level: slog.LevelWarn}),
		SkipUnknownJobCheck: true,
	}
	if c.Work {
		if pool == nil {
			return nil, errors.New("a River client that works jobs needs a pool")
		}
		var mailer Mailer = NewLogMailer(logger)
		if c.Mailer != nil {
			mailer = c.Mailer
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, NewReceiptWorker(pool, mailer, c.ReceiptSentFunc))
		riverConfig.Workers = workers
		riverConfig.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: cmp.Or(c.MaxWorkers, RiverMaxWorkersDefault)},
		}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), riverConfig)
	if err != nil {
		return nil, fmt.Errorf("creating River client: %w", err)
	}
	return client, nil
}

// receiptRiverLogHandler passes on the records of River's client from
// level up.
type receiptRiverLogHandler struct {
	slog.Handler
	level slog.Level
}

// Enabled drops records below the handler's level.
func (h *receiptRiverLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= h.level && h.Handler.Enabled(ctx, level)
}

// WithAttrs keeps the level on the derived handler.
func (h *receiptRiverLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &receiptRiverLogHandler{Handler: h.Handler.WithAttrs(attrs), level: h.level}
}

// WithGroup keeps the level on the derived handler.
func (h *receiptRiverLogHandler) WithGroup(name string) slog.Handler {
	return &receiptRiverLogHandler{Handler: h.Handler.WithGroup(name), level: h.level}
}
