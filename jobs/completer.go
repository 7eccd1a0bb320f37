package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
	CompleterMaxBackoffDoublingsDefault = 6
	CompleterQueryTimeoutDefault        = 10 * time.Second
)

// completerMaxBackoffDoublings is the most MaxBackoffDoublings may be: 2^30
// times a minute is two thousand years already.
const completerMaxBackoffDoublings = 30

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
	// holds its response (a 201 or 200, or a stored error).
	CompleterOutcomeFinished = "finished"

	// CompleterOutcomeSkippedUnknownWorkflow means the key belongs to a
	// workflow this binary does not register (an older or newer version,
	// during a rolling deploy): it is left as it is, with a warning, and a
	// completer that knows the workflow drives it.
	CompleterOutcomeSkippedUnknownWorkflow = "skipped_unknown_workflow"

	// CompleterOutcomeUnfinished means the key is still at its recovery
	// point, because a foreign call's answer was not definitive (or a ride
	// to cancel is still pending); a later pass tries again.
	CompleterOutcomeUnfinished = "unfinished"
)

// CompleterConfig configures a Completer. Zero fields take their defaults.
// There is no lock timeout here: the completer takes the engine's
// (idempotency.Engine.LockTimeout), so that it never counts a lock stale that
// the engine still honours.
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

	// Logger receives the completer's log lines. Nil discards them.
	Logger *slog.Logger

	// MaxBackoffDoublings is how many times the wait after a key's last run
	// doubles at most, up to 30. Zero means
	// CompleterMaxBackoffDoublingsDefault.
	MaxBackoffDoublings int

	// OutcomeFunc, if set, is called with the outcome of each key driven
	// (one of the CompleterOutcome constants), for metrics.
	OutcomeFunc func(outcome string)

	// QueryTimeout bounds the query that finds a pass's keys. Driving each
	// key is bounded by the engine's and Stripe's own timeouts. Zero means
	// CompleterQueryTimeoutDefault.
	QueryTimeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *CompleterConfig) withDefaults() *CompleterConfig {
	var config CompleterConfig
	if c != nil {
		config = *c
	}
	config.BatchSize = cmp.Or(config.BatchSize, CompleterBatchSizeDefault)
	config.Grace = cmp.Or(config.Grace, CompleterGraceDefault)
	config.Interval = cmp.Or(config.Interval, CompleterIntervalDefault)
	config.LastRunThreshold = cmp.Or(config.LastRunThreshold, CompleterLastRunThresholdDefault)
	config.MaxBackoffDoublings = cmp.Or(config.MaxBackoffDoublings, CompleterMaxBackoffDoublingsDefault)
	config.QueryTimeout = cmp.Or(config.QueryTimeout, CompleterQueryTimeoutDefault)
	return &config
}

// validate rejects settings the completer cannot run with.
func (c *CompleterConfig) validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > math.MaxInt32:
		return fmt.Errorf("BatchSize must be between 1 and %d, got %d", math.MaxInt32, c.BatchSize)
	case c.Grace < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Grace must not be negative, got %s", c.Grace)
	case c.Interval < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Interval must not be negative, got %s", c.Interval)
	case c.LastRunThreshold < 0:
		return fmt.Errorf("LastRunThreshold must not be negative, got %s", c.LastRunThreshold)
	case c.MaxBackoffDoublings < 0 || c.MaxBackoffDoublings > completerMaxBackoffDoublings:
		return fmt.Errorf("MaxBackoffDoublings must be between 0 and %d, got %d", completerMaxBackoffDoublings, c.MaxBackoffDoublings)
	case c.QueryTimeout < 0:
		return fmt.Errorf("QueryTimeout must not be negative, got %s", c.QueryTimeout)
	}
	return nil
}

// Completer finds idempotency keys whose requests were abandoned before they
// finished (their client gave up, or the API crashed), of any workflow, and
// drives each to its response through its own workflow (Engine.Resume), as
// the key's user and with its stored parameters. A key of a workflow the
// engine does not know is skipped and counted, never driven as something
// else. Several completers may run at once: the engine's lock on each key
// keeps two of them from driving the same key together.
type Completer struct {
	service

	config      *CompleterConfig
	engine      *idempotency.Engine
	exec        db.DBTX
	lockTimeout time.Duration
	queries     *db.Queries
}

// NewCompleter returns a completer that finds keys on exec and drives them
// through engine's registered workflows, taking its lock timeout from
// engine. A nil config means every default.
func NewCompleter(exec db.DBTX, engine *idempotency.Engine, config *CompleterConfig) (*Completer, error) {
	if engine == nil {
		return nil, errors.New("completer: an engine is required")
	}
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("completer: %w", err)
	}
	return &Completer{
		service:     newService("completer", config.Logger),
		config:      config,
		engine:      engine,
		exec:        exec,
		lockTimeout: engine.LockTimeout(),
		queries:     db.New(),
	}, nil
}

// Start runs passes in a goroutine until ctx is done or Stop is called, and
// returns at once. A pass that fails is logged and tried again after the
// interval.
func (c *Completer) Start(ctx context.Context) error {
	return c.start(ctx, func(ctx context.Context) {
		c.loop(ctx, c.config.Interval, func(ctx context.Context) (bool, error) {
			res, err := c.runOnce(ctx)
			if err != nil {
				return false, err
			}
			// A full batch runs again at once, unless keys failed with
			// errors that leave them as they were (and so due again):
			// those wait.
			return res.NumFound == c.config.BatchSize && res.NumError == 0, nil
		})
	},
		slog.Duration("grace", c.config.Grace),
		slog.Duration("interval", c.config.Interval),
		slog.Duration("last_run_threshold", c.config.LastRunThreshold),
		slog.Duration("lock_timeout", c.lockTimeout),
		slog.Int("batch_size", c.config.BatchSize),
	)
}

// completerRunOnceResult counts the keys of one pass by outcome.
type completerRunOnceResult struct {
	NumConflict int
	NumError    int
	NumFinished int
	NumFound    int

	// NumInProgress is how many of the conflicts were keys another request
	// held when the completer came to them: counted in NumConflict too.
	NumInProgress int

	// NumSkipped is how many keys were of a workflow the engine does not
	// know.
	NumSkipped int

	NumUnfinished int
}

// runOnce drives one batch of abandoned keys, one at a time. When ctx is
// done it stops between keys and returns what it counted with ctx's error;
// a key that shutdown interrupted is not counted.
func (c *Completer) runOnce(ctx context.Context) (*completerRunOnceResult, error) {
	queryCtx, cancel := context.WithTimeout(ctx, c.config.QueryTimeout)
	keys, err := c.queries.IdempotencyKeyGetAbandoned(queryCtx, c.exec, &db.IdempotencyKeyGetAbandonedParams{
		GraceSeconds:            c.config.Grace.Seconds(),
		LastRunThresholdSeconds: c.config.LastRunThreshold.Seconds(),
		LockTimeoutSeconds:      c.lockTimeout.Seconds(),
		Max:                     int32(c.config.BatchSize),
		MaxBackoffDoublings:     int32(c.config.MaxBackoffDoublings),
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("getting abandoned idempotency keys: %w", err)
	}

	res := &completerRunOnceResult{NumFound: len(keys)}
	for _, key := range keys {
		if ctx.Err() != nil {
			break
		}
		resp, err := c.engine.Resume(ctx, key)
		if err != nil && ctx.Err() != nil {
			break // interrupted by shutdown: the key stays for the next run
		}
		outcome := completerOutcome(resp, err)
		res.count(outcome)
		if errors.Is(err, idempotency.ErrRequestInProgress) || errors.Is(err, idempotency.ErrLockLost) {
			res.NumInProgress++
		}
		c.logOutcome(ctx, key, outcome, err)
		if c.config.OutcomeFunc != nil {
			c.config.OutcomeFunc(outcome)
		}
	}

	level, message := slog.LevelInfo, "completer: pass finished"
	switch {
	case res.NumFound == 0:
		level = slog.LevelDebug // an idle completer stays quiet
	case res.NumFinished == 0:
		// Say why, by the counts: keys held by another request (in
		// progress), left unfinished (Stripe not definitive; they back off),
		// other conflicts, keys of unknown workflows, errors.
		message = "completer: pass finished no key"
	}
	c.logger.Log(ctx, level, message,
		slog.Int("num_found", res.NumFound),
		slog.Int("num_finished", res.NumFinished),
		slog.Int("num_in_progress", res.NumInProgress),
		slog.Int("num_unfinished", res.NumUnfinished),
		slog.Int("num_conflict", res.NumConflict),
		slog.Int("num_skipped_unknown_workflow", res.NumSkipped),
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
	case CompleterOutcomeSkippedUnknownWorkflow:
		r.NumSkipped++
	default:
		r.NumError++
	}
}

// completerOutcome classifies what Engine.Resume returned.
func completerOutcome(resp *idempotency.Response, err error) string {
	switch {
	case err == nil && resp.Replayed:
		// Another request finished the key after this pass found it.
		return CompleterOutcomeConflict
	case err == nil:
		return CompleterOutcomeFinished
	case errors.Is(err, idempotency.ErrUnknownWorkflow):
		return CompleterOutcomeSkippedUnknownWorkflow
	case errors.Is(err, idempotency.ErrForeignIndeterminate),
		errors.Is(err, rides.ErrPaymentUnavailable),
		errors.Is(err, rides.ErrRidePending),
		errors.Is(err, rides.ErrSimulatedFailure):
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
	if outcome == CompleterOutcomeError || outcome == CompleterOutcomeSkippedUnknownWorkflow {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.Int64("idempotency_key_id", key.ID),
		slog.String("outcome", outcome),
		slog.String("workflow", key.Workflow),
		slog.String("recovery_point", key.RecoveryPoint),
		slog.Int("run_count", int(key.RunCount)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.logger.LogAttrs(ctx, level, "completer: key driven", attrs...)
}
