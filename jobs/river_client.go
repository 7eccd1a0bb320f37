package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// RiverMaxWorkersDefault is how many jobs a River client that works jobs
// runs at once, unless RiverClientConfig says otherwise.
const RiverMaxWorkersDefault = 10

// RiverClientConfig configures the River client of a process. Zero fields
// take their defaults; the zero config is an insert-only client.
type RiverClientConfig struct {
	// Logger gets the receipts of the default mailer, and River's own lines
	// from warn up: River's info lines would drown ours. Nil discards them.
	Logger *slog.Logger

	// Mailer sends receipts, in a client that works jobs. Nil means a
	// LogMailer on Logger.
	Mailer Mailer

	// MaxWorkers is how many jobs a client that works jobs runs at once.
	// Zero means RiverMaxWorkersDefault.
	MaxWorkers int

	// ReceiptSentFunc, if set, is called after each receipt sent, of a
	// ride or of a cancellation, for metrics.
	ReceiptSentFunc func()

	// Work makes a client that works jobs once started: it registers
	// ReceiptWorker, CancellationReceiptWorker and River's default queue.
	// Otherwise the client only inserts jobs, in transactions of the caller
	// (InsertManyTx), and pool may be nil.
	Work bool
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *RiverClientConfig) withDefaults() *RiverClientConfig {
	var config RiverClientConfig
	if c != nil {
		config = *c
	}
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	if config.Mailer == nil {
		config.Mailer = NewLogMailer(config.Logger)
	}
	config.MaxWorkers = cmp.Or(config.MaxWorkers, RiverMaxWorkersDefault)
	return &config
}

// validate rejects settings River cannot run with.
func (c *RiverClientConfig) validate() error {
	if c.MaxWorkers < 1 {
		return fmt.Errorf("MaxWorkers must be positive, got %d", c.MaxWorkers)
	}
	return nil
}

// NewRiverClient returns the River client of a process, on pool. A nil
// config means an insert-only client.
//
// The client inserts jobs of any kind, even kinds it has no worker for
// (River's SkipUnknownJobCheck): the enqueuer hands over whatever was
// staged, and a job this version does not know is for another version's
// workers, or stays in River, failing visibly, until one comes.
func NewRiverClient(pool *pgxpool.Pool, config *RiverClientConfig) (*river.Client[pgx.Tx], error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	riverConfig := &river.Config{
		Logger:              slog.New(&riverLogHandler{Handler: config.Logger.Handler(), level: slog.LevelWarn}),
		SkipUnknownJobCheck: true,
	}
	if config.Work {
		if pool == nil {
			return nil, errors.New("river client: a client that works jobs needs a pool")
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, NewReceiptWorker(pool, config.Mailer, config.ReceiptSentFunc))
		river.AddWorker(workers, NewCancellationReceiptWorker(pool, config.Mailer, config.ReceiptSentFunc))
		riverConfig.Workers = workers
		riverConfig.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: config.MaxWorkers},
		}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), riverConfig)
	if err != nil {
		return nil, fmt.Errorf("creating River client: %w", err)
	}
	return client, nil
}

// riverLogHandler passes on the records of River's client from level up,
// marked as River's: it is how NewRiverClient keeps River's info lines out of
// the process's log.
type riverLogHandler struct {
	slog.Handler
	level slog.Level
}

// Enabled drops records below the handler's level.
func (h *riverLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= h.level && h.Handler.Enabled(ctx, level)
}

// Handle prefixes River's message with "river: ", the shape of every other
// line ("component: what happened"), so that a reader knows whose it is.
func (h *riverLogHandler) Handle(ctx context.Context, record slog.Record) error {
	record.Message = "river: " + record.Message
	return h.Handler.Handle(ctx, record)
}

// WithAttrs keeps the level on the derived handler.
func (h *riverLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &riverLogHandler{Handler: h.Handler.WithAttrs(attrs), level: h.level}
}

// WithGroup keeps the level on the derived handler.
func (h *riverLogHandler) WithGroup(name string) slog.Handler {
	return &riverLogHandler{Handler: h.Handler.WithGroup(name), level: h.level}
}
