package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
)

// Defaults of CompleterConfig.
const (
	CompleterBatchSizeDefault           = 1000
	CompleterGraceDefault               = 5 * time.Minute
	CompleterIntervalDefault            = 5 * time.Second
	CompleterLastRunThresholdDefault    = 60 * time.Second
	CompleterLockTimeoutDefault         = idempotency.LockTimeoutDefault
	CompleterMaxBackoffDoublingsDefault = 6
)

// Outcomes of driving one key, as the completer counts and reports them.
const (
	// CompleterOutcomeConflict means another request had the key: it held
	// the key's lock, took the lock over, conflicted with this one until its
	// retries ran out, or finished the key after this pass found it.
	CompleterOutcomeConflict = "conflict"

	// CompleterOutcomeError means the key failed for any other reason; it is
	// logged as a warning.
	CompleterOutcomeError = "error"

	// CompleterOutcomeFinished means the completer finished the key: it now
	// holds its response (a 201, or a stored 402 or 503).
	CompleterOutcomeFinished = "finished"

	// CompleterOutcomeUnfinished means the key is still at its recovery
	// point, because Stripe's answer was not definitive; a later pass tries
	// again.
	CompleterOutcomeUnfinished = "unfinished"
)

// CompleterConfig configures a Completer. Zero fields take their defaults.
type CompleterConfig struct {
	// BatchSize is the most keys one pass drives. A pass that finds a full
	// batch is followed at once by another. Zero means
	// CompleterBatchSizeDefault.
	BatchSize int

	// Grace is how old a key must be before the completer touches it: until
	// then its client is expected to retry on its own. Zero means
	// CompleterGraceDefault.
	Grace time.Duration

	// Interval is the pause after a pass that did not find a full batch.
	// Zero means CompleterIntervalDefault.
	Interval time.Duration

	// LastRunThreshold is how long after its last run a key is left alone.
	// The wait doubles with each run of the key (run_count), up to
	// MaxBackoffDoublings times, so keys that keep failing are tried less
	// and less often. Zero means CompleterLastRunThresholdDefault.
	LastRunThreshold time.Duration

	// LockTimeout is how old a key's lock must be before the completer
	// counts it as abandoned. It should be the engine's lock timeout: a
	// shorter one only earns conflicts. Zero means
	// CompleterLockTimeoutDefault.
	LockTimeout time.Duration

	// MaxBackoffDoublings is how many times the wait after a key's last run
	// doubles at most. Zero means CompleterMaxBackoffDoublingsDefault.
	MaxBackoffDoublings int

	// OutcomeFunc, if set, is called with the outcome of each key driven
	// (one of the CompleterOutcome constants), for metrics.
	OutcomeFunc func(outcome string)
}

// Completer finds idempotency keys whose requests were abandoned before they
// finished (their client gave up, or the API crashed) and drives each to its
// response through the same phases the API runs, as the key's user and with
// its stored parameters. Several completers may run at once: the engine's
// lock on each key keeps two of them from driving the same key together.
type Completer struct {
	config  CompleterConfig
	creator *rides.Creator
	exec    db.DBTX
	logger  *slog.Logger
	queries *db.Queries
}

// NewCompleter returns a completer that finds keys on exec and drives them
// with creator. A nil config means every default; a nil logger discards
// the completer's log lines.
func NewCompleter(exec db.DBTX, creator *rides.Creator, config *CompleterConfig, logger *slog.Logger) *Completer {
	var c CompleterConfig
	if config != nil {
		c = *config
	}
	c.BatchSize = cmp.Or(c.BatchSize, CompleterBatchSizeDefault)
	c.Grace = cmp.Or(c.Grace, CompleterGraceDefault)
	c.Interval = cmp.Or(c.Interval, CompleterIntervalDefault)
	c.LastRunThreshold = cmp.Or(c.LastRunThreshold, CompleterLastRunThresholdDefault)
	c.LockTimeout = cmp.Or(c.LockTimeout, CompleterLockTimeoutDefault)
	c.MaxBackoffDoublings = cmp.Or(c.MaxBackoffDoublings, CompleterMaxBackoffDoublingsDefault)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Completer{config: c, creator: creator, exec: exec, logger: logger, queries: db.New()}
}

// Start runs passes until ctx is done, then returns. It blocks: run it in a
// goroutine to do anything else meanwhile. A pass that fails is logged and
// tried again after the interval.
func (c *Completer) Start(ctx context.Context) {
	runLoop(ctx, c.config.Interval, func(ctx context.Context) (bool, error) {
		res, err := c.runOnce(ctx)
		if err != nil {
			return false, err
		}
		// A full batch runs again at once, unless keys failed with errors
		// that leave them as they were (and so due again): those wait.
		return res.NumFound == c.config.BatchSize && res.NumError == 0, nil
	}, func(err error) {
		c.logger.ErrorContext(ctx, "completer: pass failed", slog.String("error", err.Error()))
	})
}

// completerRunOnceResult counts the keys of one pass by outcome.
type completerRunOnceResult struct {
	NumConflict   int
	NumError      int
	NumFinished   int
	NumFound      int
	NumUnfinished int
}

// runOnce drives one batch of abandoned keys, one at a time. When ctx is
// done it stops between keys and returns what it counted with ctx's error;
// a key that shutdown interrupted is not counted.
func (c *Completer) runOnce(ctx context.Context) (*completerRunOnceResult, error) {
	keys, err := c.queries.IdempotencyKeyGetAbandoned(ctx, c.exec, &db.IdempotencyKeyGetAbandonedParams{
		GraceSeconds:            c.config.Grace.Seconds(),
		LastRunThresholdSeconds: c.config.LastRunThreshold.Seconds(),
		LockTimeoutSeconds:      c.config.LockTimeout.Seconds(),
		Max:                     int32(c.config.BatchSize),
		MaxBackoffDoublings:     int32(c.config.MaxBackoffDoublings),
	})
	if err != nil {
		return nil, fmt.Errorf("getting abandoned idempotency keys: %w", err)
	}

	res := &completerRunOnceResult{NumFound: len(keys)}
	for _, key := range keys {
		if ctx.Err() != nil {
			break
		}
		resp, err := c.creator.Complete(ctx, key)
		if err != nil && ctx.Err() != nil {
			break // interrupted by shutdown: the key stays for the next run
		}
		outcome := completerOutcome(resp, err)
		res.count(outcome)
		c.logOutcome(ctx, key, outcome, err)
		if c.config.OutcomeFunc != nil {
			c.config.OutcomeFunc(outcome)
		}
	}

	level := slog.LevelInfo
	if res.NumFound == 0 {
		level = slog.LevelDebug // an idle completer stays quiet
	}
	c.logger.Log(ctx, level, "completer: pass finished",
		slog.Int("num_found", res.NumFound),
		slog.Int("num_finished", res.NumFinished),
		slog.Int("num_unfinished", res.NumUnfinished),
		slog.Int("num_conflict", res.NumConflict),
		slog.Int("num_error", res.NumError),
	)
	return res, ctx.Err()
}

// count adds one key with outcome.
func (r *completerRunOnceResult) count(outcome string) {
	switch outcome {
	case CompleterOutcomeConflict:
		r.NumConflict++
	case CompleterOutcomeFinished:
		r.NumFinished++
	case CompleterOutcomeUnfinished:
		r.NumUnfinished++
	default:
		r.NumError++
	}
}

// completerOutcome classifies what Creator.Complete returned.
func completerOutcome(resp *idempotency.Response, err error) string {
	switch {
	case err == nil && resp.Replayed:
		// Another request finished the key after this pass found it.
		return CompleterOutcomeConflict
	case err == nil:
		return CompleterOutcomeFinished
	case errors.Is(err, rides.ErrPaymentUnavailable), errors.Is(err, rides.ErrSimulatedFailure):
		return CompleterOutcomeUnfinished
	case errors.Is(err, idempotency.ErrRequestInProgress),
		errors.Is(err, idempotency.ErrConflict),
		errors.Is(err, idempotency.ErrKeyNotFound), // reaped after this pass found it
		errors.Is(err, idempotency.ErrLockLost):
		return CompleterOutcomeConflict
	default:
		return CompleterOutcomeError
	}
}

// logOutcome logs one key's outcome: at debug, or as a warning for an
// error.
func (c *Completer) logOutcome(ctx context.Context, key *db.IdempotencyKey, outcome string, err error) {
	level := slog.LevelDebug
	if outcome == CompleterOutcomeError {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.Int64("idempotency_key_id", key.ID),
		slog.String("outcome", outcome),
		slog.String("recovery_point", key.RecoveryPoint),
		slog.Int("run_count", int(key.RunCount)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.logger.LogAttrs(ctx, level, "completer: key driven", attrs...)
}
