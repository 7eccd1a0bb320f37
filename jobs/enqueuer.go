package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/rides"
)

// Defaults of EnqueuerConfig.
const (
	EnqueuerBatchSizeDefault    = 1000
	EnqueuerIntervalDefault     = 5 * time.Second
	EnqueuerQueryTimeoutDefault = 10 * time.Second
)

// EnqueuerConfig configures an Enqueuer. Zero fields take their defaults.
type EnqueuerConfig struct {
	// BatchSize is the most staged jobs one pass moves, in one transaction.
	// A pass that moves a full batch is followed at once by another. Zero
	// means EnqueuerBatchSizeDefault.
	BatchSize int

	// Interval is the pause after a pass that did not move a full batch.
	// Zero means EnqueuerIntervalDefault.
	Interval time.Duration

	// JobsEnqueuedFunc, if set, is called after each pass that moved jobs
	// with how many it moved, for metrics.
	JobsEnqueuedFunc func(n int)

	// Logger receives the enqueuer's log lines. Nil discards them.
	Logger *slog.Logger

	// QueryTimeout bounds each pass's transaction: taking the batch and
	// inserting it into River. Zero means EnqueuerQueryTimeoutDefault.
	QueryTimeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *EnqueuerConfig) withDefaults() *EnqueuerConfig {
	var config EnqueuerConfig
	if c != nil {
		config = *c
	}
	config.BatchSize = cmp.Or(config.BatchSize, EnqueuerBatchSizeDefault)
	config.Interval = cmp.Or(config.Interval, EnqueuerIntervalDefault)
	config.QueryTimeout = cmp.Or(config.QueryTimeout, EnqueuerQueryTimeoutDefault)
	return &config
}

// validate rejects settings the enqueuer cannot run with.
func (c *EnqueuerConfig) validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > math.MaxInt32:
		return fmt.Errorf("BatchSize must be between 1 and %d, got %d", math.MaxInt32, c.BatchSize)
	case c.Interval < 0:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Interval must not be negative, got %s", c.Interval)
	case c.QueryTimeout < 0:
		return fmt.Errorf("QueryTimeout must not be negative, got %s", c.QueryTimeout)
	}
	return nil
}

// Enqueuer drains staged_jobs into River: the transactionally staged job
// drain of brandur.org/job-drain. Each pass, in one transaction, deletes a
// batch of the oldest staged jobs, returning them, and inserts exactly those
// jobs into River; the commit hands them over, and a failure anywhere rolls
// both back, so a job is neither lost nor handed over twice.
//
// Staged jobs map to River jobs by name: send_ride_receipt becomes a
// rides.ReceiptArgs job and send_cancellation_receipt a
// rides.CancellationReceiptArgs job, each unique by args. A job whose name the enqueuer does not
// know, or whose args do not decode, is neither dropped nor allowed to
// block the queue: it is logged at error and handed to River as it is,
// under its name as River kind and its args verbatim, without uniqueness.
// There it waits for a worker of that kind (a newer version of this program, during
// a rolling deploy) or, with none, fails with River's unknown-kind error on
// each attempt until River discards it: in River's table, with its errors,
// where an operator can see it and retry it.
//
// Several enqueuers may run at once: each takes rows the others have not
// locked (FOR UPDATE SKIP LOCKED).
type Enqueuer struct {
	service

	client  *river.Client[pgx.Tx]
	config  *EnqueuerConfig
	exec    db.Executor
	queries *db.Queries
}

// NewEnqueuer returns an enqueuer that takes staged jobs on exec and inserts
// them with client, in the same transaction. A nil config means every
// default.
func NewEnqueuer(exec db.Executor, client *river.Client[pgx.Tx], config *EnqueuerConfig) (*Enqueuer, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("enqueuer: %w", err)
	}
	return &Enqueuer{
		service: newService("enqueuer", config.Logger),
		client:  client,
		config:  config,
		exec:    exec,
		queries: db.New(),
	}, nil
}

// Start runs passes in a goroutine until ctx is done or Stop is called, and
// returns at once. A pass that fails is logged and tried again after the
// interval; its jobs stay staged.
func (e *Enqueuer) Start(ctx context.Context) error {
	return e.start(ctx, func(ctx context.Context) {
		e.loop(ctx, e.config.Interval, func(ctx context.Context) (bool, error) {
			res, err := e.runOnce(ctx)
			if err != nil {
				return false, err
			}
			return res.NumJobs == e.config.BatchSize, nil
		})
	},
		slog.Duration("interval", e.config.Interval),
		slog.Int("batch_size", e.config.BatchSize),
	)
}

// enqueuerRunOnceResult counts the staged jobs of one pass.
type enqueuerRunOnceResult struct {
	// NumDuplicates is how many of them River did not insert because it
	// already had the same unique job.
	NumDuplicates int

	// NumJobs is how many staged jobs the pass took out of staged_jobs and
	// handed to River.
	NumJobs int
}

// runOnce moves one batch of staged jobs into River, in one transaction.
//
// The transaction is READ COMMITTED, which is enough: the batch is taken by
// a single statement (DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP
// LOCKED) RETURNING *), so the rows deleted are exactly the rows returned
// and inserted into River, whatever commits meanwhile. Rows of transactions
// that have not committed are not in the statement's snapshot and stay for
// a later pass, even when their ids are lower than ids taken now. A
// stricter level would add nothing but failures: under REPEATABLE READ,
// rows another enqueuer deleted after this transaction's snapshot make FOR
// UPDATE fail with a serialization error instead of being skipped.
func (e *Enqueuer) runOnce(ctx context.Context) (*enqueuerRunOnceResult, error) {
	txCtx, cancel := context.WithTimeout(ctx, e.config.QueryTimeout)
	defer cancel()
	res, err := db.WithTxV(txCtx, e.exec, db.TxOptions{Isolation: pgx.ReadCommitted}, func(ctx context.Context, tx pgx.Tx) (*enqueuerRunOnceResult, error) {
		staged, err := e.queries.StagedJobDeleteBatch(ctx, tx, int32(e.config.BatchSize))
		if err != nil {
			return nil, fmt.Errorf("taking staged jobs: %w", err)
		}
		res := &enqueuerRunOnceResult{NumJobs: len(staged)}
		if len(staged) == 0 {
			return res, nil
		}
		// RETURNING's order is unspecified: insert in staging order.
		slices.SortFunc(staged, func(a, b *db.StagedJob) int { return cmp.Compare(a.ID, b.ID) })
		params, numDuplicates := e.insertParams(ctx, staged)
		results, err := e.client.InsertManyTx(ctx, tx, params)
		if err != nil {
			return nil, fmt.Errorf("inserting %d jobs into River: %w", len(params), err)
		}
		res.NumDuplicates = numDuplicates
		for _, result := range results {
			if result.UniqueSkippedAsDuplicate {
				res.NumDuplicates++
			}
		}
		return res, nil
	})
	if err != nil {
		return nil, err
	}

	level := slog.LevelDebug
	if res.NumJobs > 0 {
		level = slog.LevelInfo
	}
	e.logger.LogAttrs(ctx, level, "enqueuer: enqueued jobs",
		slog.Int("num_jobs", res.NumJobs),
		slog.Int("num_duplicates", res.NumDuplicates),
	)
	if res.NumJobs > 0 && e.config.JobsEnqueuedFunc != nil {
		e.config.JobsEnqueuedFunc(res.NumJobs)
	}
	return res, nil
}

// insertParams maps staged jobs to River inserts, in order. It leaves out,
// and counts, jobs unique by args that repeat an earlier job of the batch:
// River inserts a batch in one statement, which cannot insert and then
// find as a duplicate the same unique job (Postgres: "ON CONFLICT DO UPDATE
// command cannot affect row a second time"), so one repeated receipt would
// fail every pass and block the queue.
func (e *Enqueuer) insertParams(ctx context.Context, staged []*db.StagedJob) ([]river.InsertManyParams, int) {
	params := make([]river.InsertManyParams, 0, len(staged))
	seen := make(map[string]bool)
	numDuplicates := 0
	for _, job := range staged {
		args := e.jobArgs(ctx, job)
		if key, ok := enqueuerUniqueKey(args); ok {
			if seen[key] {
				numDuplicates++
				continue
			}
			seen[key] = true
		}
		params = append(params, river.InsertManyParams{Args: args})
	}
	return params, numDuplicates
}

// jobArgs maps a staged job to River job args by its name. An unknown name,
// or args that do not decode, are logged and passed on as they are (see
// Enqueuer).
func (e *Enqueuer) jobArgs(ctx context.Context, job *db.StagedJob) river.JobArgs {
	attrs := []slog.Attr{slog.Int64("staged_job_id", job.ID), slog.String("job_name", job.JobName)}
	var (
		args river.JobArgs
		err  error
	)
	switch job.JobName {
	case rides.JobNameSendRideReceipt:
		args, err = enqueuerDecode[rides.ReceiptArgs](job.JobArgs)
	case rides.JobNameSendCancellationReceipt:
		args, err = enqueuerDecode[rides.CancellationReceiptArgs](job.JobArgs)
	default:
		e.logger.LogAttrs(ctx, slog.LevelError, "enqueuer: unknown job name; handing the job to River under that kind", attrs...)
		return enqueuerRawArgs{args: job.JobArgs, kind: job.JobName}
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		e.logger.LogAttrs(ctx, slog.LevelError, "enqueuer: job args do not decode; handing the job to River as it is", attrs...)
		return enqueuerRawArgs{args: job.JobArgs, kind: job.JobName}
	}
	return args
}

// enqueuerDecode decodes staged args of type T and validates them.
func enqueuerDecode[T interface {
	river.JobArgs
	Validate() error
}](encoded json.RawMessage) (river.JobArgs, error) {
	var args T
	if err := json.Unmarshal(encoded, &args); err != nil {
		return nil, err
	}
	if err := args.Validate(); err != nil {
		return nil, err
	}
	return args, nil
}

// enqueuerUniqueKey returns, for args that River inserts unique by args, a
// key that two jobs share when River would take one as a duplicate of the
// other. ok is false for args that are not unique.
func enqueuerUniqueKey(args river.JobArgs) (key string, ok bool) {
	withOpts, isWithOpts := args.(river.JobArgsWithInsertOpts)
	if !isWithOpts || !withOpts.InsertOpts().UniqueOpts.ByArgs {
		return "", false
	}
	encoded, err := json.Marshal(args)
	if err != nil {
		return "", false // River's insert reports it
	}
	return args.Kind() + " " + string(encoded), true
}

// enqueuerRawArgs are a staged job's args handed to River as they are,
// under kind.
type enqueuerRawArgs struct {
	args json.RawMessage
	kind string
}

// Kind is the staged job's name.
func (a enqueuerRawArgs) Kind() string { return a.kind }

// MarshalJSON returns the staged args verbatim.
func (a enqueuerRawArgs) MarshalJSON() ([]byte, error) { return a.args, nil }
