package jobs

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/db"
)

// Defaults of ReaperConfig.
const (
	ReaperBatchSizeDefault = 1000
	ReaperHorizonDefault   = 72 * time.Hour
	ReaperIntervalDefault  = 5 * time.Second
)

// ReaperConfig configures a Reaper. Zero fields take their defaults.
type ReaperConfig struct {
	// BatchSize is the most keys one pass deletes. A pass that deletes a
	// full batch is followed at once by another. Zero means
	// ReaperBatchSizeDefault.
	BatchSize int

	// Horizon is how old a key must be to be deleted: long enough that no
	// client retries it any more and that the completer had its chances
	// with it. Zero means ReaperHorizonDefault.
	Horizon time.Duration

	// Interval is the pause after a pass that did not delete a full batch.
	// Zero means ReaperIntervalDefault.
	Interval time.Duration

	// ReapedFunc, if set, is called after each pass that deleted keys with
	// how many of them had finished and how many had not, for metrics.
	ReapedFunc func(finished, unfinished int64)
}

// Reaper deletes idempotency keys older than the horizon, finished or not.
// Their rides stay, with no key. Unfinished keys are requests that never got
// a definitive answer; the reaper logs how many it deleted as a warning, for
// a human to look into.
type Reaper struct {
	config  ReaperConfig
	exec    db.DBTX
	logger  *slog.Logger
	queries *db.Queries
}

// NewReaper returns a reaper that deletes keys on exec. A nil config means
// every default; a nil logger discards the reaper's log lines.
func NewReaper(exec db.DBTX, config *ReaperConfig, logger *slog.Logger) *Reaper {
	var c ReaperConfig
	if config != nil {
		c = *config
	}
	c.BatchSize = cmp.Or(c.BatchSize, ReaperBatchSizeDefault)
	c.Horizon = cmp.Or(c.Horizon, ReaperHorizonDefault)
	c.Interval = cmp.Or(c.Interval, ReaperIntervalDefault)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reaper{config: c, exec: exec, logger: logger, queries: db.New()}
}

// Start runs passes until ctx is done, then returns. It blocks: run it in a
// goroutine to do anything else meanwhile. A pass that fails is logged and
// tried again after the interval.
func (r *Reaper) Start(ctx context.Context) {
	runLoop(ctx, r.config.Interval, func(ctx context.Context) (bool, error) {
		res, err := r.runOnce(ctx)
		if err != nil {
			return false, err
		}
		return res.NumDeleted == int64(r.config.BatchSize), nil
	}, func(err error) {
		r.logger.ErrorContext(ctx, "reaper: pass failed", slog.String("error", err.Error()))
	})
}

// reaperRunOnceResult counts the keys one pass deleted.
type reaperRunOnceResult struct {
	NumDeleted    int64
	NumUnfinished int64
}

// runOnce deletes one batch of keys older than the horizon, oldest first.
func (r *Reaper) runOnce(ctx context.Context) (*reaperRunOnceResult, error) {
	row, err := r.queries.IdempotencyKeyDeleteOlderThan(ctx, r.exec, &db.IdempotencyKeyDeleteOlderThanParams{
		HorizonSeconds: r.config.Horizon.Seconds(),
		Max:            int32(r.config.BatchSize),
	})
	if err != nil {
		return nil, fmt.Errorf("deleting idempotency keys: %w", err)
	}
	res := &reaperRunOnceResult{NumDeleted: row.NumDeleted, NumUnfinished: row.NumUnfinished}

	attrs := []slog.Attr{
		slog.Int64("num_deleted", res.NumDeleted),
		slog.Int64("num_unfinished", res.NumUnfinished),
		slog.Duration("horizon", r.config.Horizon),
	}
	switch {
	case res.NumUnfinished > 0:
		r.logger.LogAttrs(ctx, slog.LevelWarn, "reaper: deleted keys of requests that never finished; their rides may lack a charge or a response", attrs...)
	case res.NumDeleted > 0:
		r.logger.LogAttrs(ctx, slog.LevelInfo, "reaper: deleted keys", attrs...)
	default:
		r.logger.LogAttrs(ctx, slog.LevelDebug, "reaper: nothing to delete", attrs...)
	}
	if res.NumDeleted > 0 && r.config.ReapedFunc != nil {
		r.config.ReapedFunc(res.NumDeleted-res.NumUnfinished, res.NumUnfinished)
	}
	return res, nil
}
