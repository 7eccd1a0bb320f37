package jobs

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/rocketrides/rocketrides/db"
)

// Defaults of ReaperConfig.
const (
	ReaperBatchSizeDefault    = 1000
	ReaperHorizonDefault      = 72 * time.Hour
	ReaperIntervalDefault     = 5 * time.Second
	ReaperQueryTimeoutDefault = 10 * time.Second
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

	// Logger receives the reaper's log lines. Nil discards them.
	Logger *slog.Logger

	// QueryTimeout bounds each pass's delete. Zero means
	// ReaperQueryTimeoutDefault.
	QueryTimeout time.Duration

	// ReapedFunc, if set, is called after each pass that deleted keys with
	// how many of them had finished and how many had not, for metrics.
	ReapedFunc func(finished, unfinished int64)
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ReaperConfig) withDefaults() *ReaperConfig {
	var config ReaperConfig
	if c != nil {
		config = *c
	}
	config.BatchSize = cmp.Or(config.BatchSize, ReaperBatchSizeDefault)
	config.Horizon = cmp.Or(config.Horizon, ReaperHorizonDefault)
	config.Interval = cmp.Or(config.Interval, ReaperIntervalDefault)
	config.QueryTimeout = cmp.Or(config.QueryTimeout, ReaperQueryTimeoutDefault)
	return &config
}

// validate rejects settings the reaper cannot run with.
func (c *ReaperConfig) validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > math.MaxInt32:
		return fmt.Errorf("BatchSize must be between 1 and %d, got %d", math.MaxInt32, c.BatchSize)
	case c.Horizon < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Horizon must not be negative, got %s", c.Horizon)
	case c.Interval < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Interval must not be negative, got %s", c.Interval)
	case c.QueryTimeout < 0:
		return fmt.Errorf("QueryTimeout must not be negative, got %s", c.QueryTimeout)
	}
	return nil
}

// Reaper deletes idempotency keys older than the horizon, finished or not.
// Their rides stay, with no key. Unfinished keys are requests that never got
// a definitive answer; the reaper logs how many it deleted as a warning, for
// a human to look into.
type Reaper struct {
	service

	config  *ReaperConfig
	exec    db.DBTX
	queries *db.Queries
}

// NewReaper returns a reaper that deletes keys on exec. A nil config means
// every default.
func NewReaper(exec db.DBTX, config *ReaperConfig) (*Reaper, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	return &Reaper{service: newService("reaper", config.Logger), config: config, exec: exec, queries: db.New()}, nil
}

// Start runs passes in a goroutine until ctx is done or Stop is called, and
// returns at once. A pass that fails is logged and tried again after the
// interval.
func (r *Reaper) Start(ctx context.Context) error {
	return r.start(ctx, func(ctx context.Context) {
		r.loop(ctx, r.config.Interval, func(ctx context.Context) (bool, error) {
			res, err := r.runOnce(ctx)
			if err != nil {
				return false, err
			}
			return res.NumDeleted == int64(r.config.BatchSize), nil
		})
	},
		slog.Duration("horizon", r.config.Horizon),
		slog.Duration("interval", r.config.Interval),
		slog.Int("batch_size", r.config.BatchSize),
	)
}

// reaperRunOnceResult counts the keys one pass deleted.
type reaperRunOnceResult struct {
	NumDeleted    int64
	NumUnfinished int64
}

// runOnce deletes one batch of keys older than the horizon, oldest first.
func (r *Reaper) runOnce(ctx context.Context) (*reaperRunOnceResult, error) {
	queryCtx, cancel := context.WithTimeout(ctx, r.config.QueryTimeout)
	defer cancel()
	row, err := r.queries.IdempotencyKeyDeleteOlderThan(queryCtx, r.exec, &db.IdempotencyKeyDeleteOlderThanParams{
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
