package idempotency

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
)

// Recovery points that every workflow shares. A workflow names the points in
// between.
const (
	RecoveryPointStarted  = "started"
	RecoveryPointFinished = "finished"
)

// MaxAttemptsSerializableDefault is how many times a phase runs in all at
// SERIALIZABLE, where unrelated requests conflict all the time: each phase
// reads (its lock check, its UPDATE of the key, the foreign key check of a
// new ride) and writes (a new key or ride, or an update of a key, never HOT
// because recovery_point is in a partial index's predicate) the rightmost
// leaf pages of idempotency_keys_pkey and rides_pkey, and PostgreSQL's
// predicate locks on B-tree pages cannot tell the rows apart. With 64
// clients sending distinct keys, a phase ran up to 12 times on 4
// connections and up to 38 times on 16; db.TxMaxAttemptsDefault (10)
// answered 5 requests in 1,000 with a conflict on 4 connections.
const MaxAttemptsSerializableDefault = 40

// LockTimeoutDefault is how long a lock holds before another request may
// take the key over.
const LockTimeoutDefault = 90 * time.Second

// EngineConfig configures an Engine. Zero fields take their defaults.
type EngineConfig struct {
	// Hooks are called at the boundaries of phases. Tests use them to fail or
	// stop a request at a precise point; production leaves them nil.
	Hooks *Hooks

	// Isolation is the isolation level of every phase's transaction:
	// pgx.ReadCommitted (the default) or pgx.Serializable.
	Isolation pgx.TxIsoLevel

	// LockTimeout is how long a key's lock holds before another request may
	// take it over. Zero means LockTimeoutDefault. The completer reads it
	// from the engine (Engine.LockTimeout), so both agree on when a lock is
	// stale.
	LockTimeout time.Duration

	// Logger receives the engine's log lines. Nil discards them.
	Logger *slog.Logger

	// ObservePhaseFunc, if set, is called after each phase commits with the
	// recovery point it reached and how long it took, for metrics.
	ObservePhaseFunc func(recoveryPoint string, elapsed time.Duration)

	// MaxAttempts is how many times a phase that fails with a serialization
	// failure or a deadlock runs in all. Zero means db.TxMaxAttemptsDefault
	// at READ COMMITTED and MaxAttemptsSerializableDefault at SERIALIZABLE.
	MaxAttempts int

	// RetriedFunc, if set, is called each time a phase's transaction is
	// retried, for metrics.
	RetriedFunc func(err error)

	// TxTimeout bounds each attempt of a phase's transaction, from the
	// wait for its connection to its commit. Zero means
	// db.TxTimeoutDefault.
	TxTimeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *EngineConfig) withDefaults() *EngineConfig {
	var config EngineConfig
	if c != nil {
		config = *c
	}
	config.Hooks = cmp.Or(config.Hooks, &Hooks{})
	config.Isolation = cmp.Or(config.Isolation, pgx.ReadCommitted)
	config.LockTimeout = cmp.Or(config.LockTimeout, LockTimeoutDefault)
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	config.TxTimeout = cmp.Or(config.TxTimeout, db.TxTimeoutDefault)
	if config.MaxAttempts == 0 && config.Isolation == pgx.Serializable {
		config.MaxAttempts = MaxAttemptsSerializableDefault
	}
	return &config
}

// validate rejects settings the engine cannot run with.
func (c *EngineConfig) validate() error {
	switch {
	case c.Isolation != pgx.ReadCommitted && c.Isolation != pgx.Serializable:
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Isolation must be read committed or serializable, got %q", c.Isolation)
	case c.LockTimeout < 0:
		return fmt.Errorf("LockTimeout must not be negative, got %s", c.LockTimeout)
	case c.MaxAttempts < 0:
		return fmt.Errorf("MaxAttempts must not be negative, got %d", c.MaxAttempts)
	case c.TxTimeout < 0:
		return fmt.Errorf("TxTimeout must not be negative, got %s", c.TxTimeout)
	}
	return nil
}

// Hooks are test seams at phase boundaries. Each may be nil. A hook that
// returns an error fails the request there, as if the database had failed;
// a hook that never returns (runtime.Goexit) stops it dead, as a crash
// would.
type Hooks struct {
	// AfterCommit is called after the phase that left the key at
	// recoveryPoint committed.
	AfterCommit func(ctx context.Context, recoveryPoint string) error

	// BeforeCommit is called inside a phase's transaction, after its writes,
	// before it commits; recoveryPoint is where the phase takes the key.
	BeforeCommit func(ctx context.Context, recoveryPoint string) error

	// BeforePhase is called by Run.AtomicPhase before its transaction
	// begins; recoveryPoint is where the key is. In a step that calls a
	// foreign system, it comes after the call answered and before its
	// outcome is recorded.
	BeforePhase func(ctx context.Context, recoveryPoint string) error
}

// Engine executes workflows over idempotency keys. It is safe for concurrent
// use. Its workflows are registered with Register before the first request.
type Engine struct {
	config  *EngineConfig
	exec    db.Executor
	logger  *slog.Logger
	queries *db.Queries
	txOpts  db.TxOptions
	unlocks *unlocker

	mu        sync.RWMutex
	workflows map[string]*Workflow
}

// NewEngine returns an engine whose transactions run on exec: the pool in
// production, or db.Savepoint over a test's transaction. A nil config means
// every default.
func NewEngine(exec db.Executor, config *EngineConfig) (*Engine, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("idempotency engine: %w", err)
	}
	return &Engine{
		config:  config,
		exec:    exec,
		logger:  config.Logger,
		queries: db.New(),
		unlocks: newUnlocker(),
		txOpts: db.TxOptions{
			Isolation:   config.Isolation,
			MaxAttempts: config.MaxAttempts,
			RetriedFunc: config.RetriedFunc,
			Timeout:     config.TxTimeout,
		},
		workflows: make(map[string]*Workflow),
	}, nil
}

// LockTimeout is how long a key's lock holds before another request may take
// the key over: the one value of it, which the completer asks for too.
func (e *Engine) LockTimeout() time.Duration {
	return e.config.LockTimeout
}

// Request identifies one logical request: who sent it, under which key, and
// what it asks for. Method, Path and Params are what a retry with the same
// key must repeat: anything else is ErrParamsMismatch.
type Request struct {
	// Key is the client's idempotency key.
	Key string

	// Known is the key as the caller read it just before, if it exists. A
	// finished key is replayed from it without a transaction; an unfinished
	// one is locked in the key phase as an existing key, with no attempt to
	// insert it.
	Known *KnownKey

	// Method is the request's HTTP method.
	Method string

	// Path is the request's CONCRETE path, "/rides/42/cancel", not its
	// route pattern (that is the workflow's Name). It is stored on the key,
	// and a retry with the same key must send the same path: the same key
	// sent to cancel ride 43 is ErrParamsMismatch, not a replay of ride
	// 42's answer.
	Path string

	// Params is the request's parameters as a JSON object, path parameters
	// included ({"ride_id": 42, "reason": "..."}), so that a key reused
	// with other parameters is a mismatch, and so that the workflow can be
	// restored from the key alone (Workflow.Restore). A retry must send the
	// same parameters; they are compared as JSON values, so 0 equals 0.0.
	Params json.RawMessage

	// ResumeOnly makes Execute work only a key that exists: where there is
	// none, it returns ErrKeyNotFound instead of inserting one. The
	// completer sets it, so that a key the reaper deleted under it is not
	// started over (a new key would carry a new Stripe idempotency key, and
	// charge again).
	ResumeOnly bool

	// UserID is the user who sent the request; keys are scoped per user.
	UserID int64

	// Workflow is the Name of the registered workflow the request runs,
	// stored on its key so that the completer resumes it through the same
	// workflow. A name never registered is ErrUnknownWorkflow.
	Workflow string
}

// KnownKey is what Request.Known needs of a key that was read earlier.
type KnownKey struct {
	Method        string
	Params        json.RawMessage
	Path          string
	RecoveryPoint string
	ResponseBody  json.RawMessage
	ResponseCode  int32
}

// Response is the definitive answer to a request: the status and body stored
// on its finished key.
type Response struct {
	// Body is the stored JSON body, compacted. Every attempt with the same
	// key gets the same bytes.
	Body []byte

	// Replayed is true when the response was stored by an earlier attempt.
	Replayed bool

	// Status is the HTTP status code.
	Status int
}

// Phases are one request's atomic phases: what Execute runs. They usually
// close over the request (its parsed parameters, its user), so each request
// builds its own, for its registered Workflow.
type Phases struct {
	// Start is the phase that runs at RecoveryPointStarted. No foreign call
	// comes between inserting a key and Start, so for a new key both run in
	// one transaction.
	Start PhaseFunc

	// Steps advance the key from each of the workflow's RecoveryPoints:
	// exactly one step for each.
	Steps map[string]StepFunc
}

// PhaseFunc is an atomic phase: it queues its statements in tx and returns
// the Result to apply to key in the same transaction. The statements run
// when the batch is sent, after the phase returns (or at tx.Flush, for a
// phase that must read before it writes): a value a queued query scans is
// filled only then (db.Pipeline). A start phase that runs with a new key's
// insert sees the key before it exists: its ID and times are zero, so its
// statements find the key by its UserID and IdempotencyKey. A phase may run
// more than once (a serialization failure retries the transaction), so it
// must not call a foreign system.
type PhaseFunc func(ctx context.Context, tx *db.Pipeline, key *db.IdempotencyKey) (Result, error)

// StepFunc advances a locked key from one recovery point: an atomic phase
// (run.AtomicPhase), or a foreign call whose outcome is then recorded in
// one.
type StepFunc func(ctx context.Context, run *Run) error

// Execute runs phases, the phases of the workflow req.Workflow names, for
// req to the end and returns its response: it replays a finished key, or
// locks the key and runs the phases from its recovery point until one
// finishes it. On an error other than ErrLockLost it releases the key's
// lock, if it still holds it, and keeps the recovery point, so the next
// attempt resumes there.
func (e *Engine) Execute(ctx context.Context, req *Request, phases *Phases) (*Response, error) {
	if known := req.Known; known != nil && known.RecoveryPoint == RecoveryPointFinished {
		if !sameRequest(req, known.Method, known.Path, known.Params) {
			return nil, ErrParamsMismatch
		}
		return newResponse(int(known.ResponseCode), known.ResponseBody, true)
	}
	wf, err := e.workflow(req.Workflow)
	if err != nil {
		return nil, err
	}
	if err := wf.checkPhases(phases); err != nil {
		return nil, err
	}

	run, err := e.lockKey(ctx, req, wf, phases.Start)
	if err != nil {
		return nil, err
	}
	if run.replayed {
		return run.response(true)
	}

	for run.key.RecoveryPoint != RecoveryPointFinished {
		if err := run.step(ctx, phases); err != nil {
			if !errors.Is(err, ErrLockLost) {
				e.unlock(ctx, run.key)
			}
			return nil, err
		}
	}
	return run.response(false)
}

// keyValueConstraint is the unique constraint on a user's key values.
const keyValueConstraint = "idempotency_keys_user_id_idempotency_key_key"

// lockKey is the key phase: it inserts a new key, locked, and runs start in
// the same transaction; or it locks an existing unfinished key whose lock is
// free or stale; or it returns a finished key for replay.
func (e *Engine) lockKey(ctx context.Context, req *Request, wf *Workflow, startPhase PhaseFunc) (*Run, error) {
	token := uuid.New()
	if !req.ResumeOnly && req.Known == nil {
		run, err := e.insertKey(ctx, req, wf, startPhase, token)
		if !db.IsUniqueViolation(err, keyValueConstraint) {
			return run, err
		}
		// Another request inserted the key first (a retry of one that is
		// running or crashed): the insert and the start phase rolled back.
	}
	return e.lockExistingKey(ctx, req, wf, token)
}

// insertKey is the key phase of a new key, in one round trip: the key's
// INSERT, the start phase's statements and the key's update, between BEGIN
// and COMMIT. It fails with a unique violation of keyValueConstraint when
// the user has a key of that value already.
func (e *Engine) insertKey(ctx context.Context, req *Request, wf *Workflow, startPhase PhaseFunc, token uuid.UUID) (*Run, error) {
	start := time.Now()
	// The key as the start phase sees it: what is known before the insert
	// is sent. Its id and times are not, so the phase finds the key in SQL
	// by its user and value.
	key := &db.IdempotencyKey{
		IdempotencyKey: req.Key,
		LockToken:      &token,
		RecoveryPoint:  RecoveryPointStarted,
		RequestMethod:  req.Method,
		RequestParams:  req.Params,
		RequestPath:    req.Path,
		UserID:         req.UserID,
		Workflow:       wf.Name,
	}
	var attempted *db.IdempotencyKey
	updated, err := db.WithPipelineV(ctx, e.exec, e.txOpts, func(ctx context.Context, tx *db.Pipeline) (*db.IdempotencyKey, error) {
		err := e.queries.IdempotencyKeyCreate(ctx, tx, &db.IdempotencyKeyCreateParams{
			IdempotencyKey: req.Key,
			LockToken:      &token,
			RequestMethod:  req.Method,
			RequestParams:  req.Params,
			RequestPath:    req.Path,
			UserID:         req.UserID,
			Workflow:       wf.Name,
		})
		if err != nil {
			return nil, fmt.Errorf("inserting idempotency key: %w", err)
		}
		var updated *db.IdempotencyKey
		updated, attempted, err = e.applyPhase(ctx, tx, wf, key, startPhase)
		return updated, err
	})
	if err != nil {
		if db.IsUniqueViolation(err, keyValueConstraint) {
			return nil, err
		}
		if updated = e.resolveCommit(ctx, err, "", attempted); updated == nil {
			if errors.Is(err, db.ErrCommitInDoubt) {
				// The key may exist, locked, if the database could not
				// tell.
				e.unlock(ctx, attempted)
			}
			return nil, e.conflict(err)
		}
	}
	run := &Run{engine: e, key: updated, workflow: wf}
	e.observePhase(run.key.RecoveryPoint, start)
	if err := e.config.Hooks.afterCommit(ctx, run.key.RecoveryPoint); err != nil {
		e.unlock(ctx, run.key)
		return nil, err
	}
	return run, nil
}

// lockExistingKey is the key phase of a key that exists: in a transaction
// of its own, it locks the key (lockExisting) or returns it for replay.
func (e *Engine) lockExistingKey(ctx context.Context, req *Request, wf *Workflow, token uuid.UUID) (*Run, error) {
	start := time.Now()
	run, err := db.WithTxV(ctx, e.exec, e.txOpts, func(ctx context.Context, tx pgx.Tx) (*Run, error) {
		return e.lockExisting(ctx, tx, req, wf, token)
	})
	if errors.Is(err, ErrKeyNotFound) && !req.ResumeOnly {
		// The key was deleted (the reaper) since its insert failed or the
		// caller read it: the client's retry inserts it anew.
		return nil, fmt.Errorf("%w: key deleted while being read", ErrConflict)
	}
	if err != nil && run != nil && !run.replayed {
		if key := e.resolveCommit(ctx, err, "", run.key); key != nil {
			run.key, err = key, nil
		} else if errors.Is(err, db.ErrCommitInDoubt) {
			e.unlock(ctx, run.key)
		}
	}
	if err != nil {
		return nil, e.conflict(err)
	}
	if !run.replayed {
		e.observePhase(run.key.RecoveryPoint, start)
		if err := e.config.Hooks.afterCommit(ctx, run.key.RecoveryPoint); err != nil {
			e.unlock(ctx, run.key)
			return nil, err
		}
	}
	return run, nil
}

// lockExisting locks the user's existing key for req, in tx: it checks that
// the key was used for the same request, returns a finished key for replay,
// and takes the lock of an unfinished one unless a live request holds it.
func (e *Engine) lockExisting(ctx context.Context, tx pgx.Tx, req *Request, wf *Workflow, token uuid.UUID) (*Run, error) {
	existing, err := e.queries.IdempotencyKeyGetForUpdate(ctx, tx, &db.IdempotencyKeyGetForUpdateParams{
		IdempotencyKey:     req.Key,
		LockTimeoutSeconds: e.config.LockTimeout.Seconds(),
		UserID:             req.UserID,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading idempotency key: %w", err)
	}
	key := &existing.IdempotencyKey
	switch {
	case key.Workflow != wf.Name, !sameRequest(req, key.RequestMethod, key.RequestPath, key.RequestParams):
		return nil, ErrParamsMismatch
	case key.RecoveryPoint == RecoveryPointFinished:
		return &Run{engine: e, key: key, replayed: true, workflow: wf}, nil
	case existing.LockLive:
		return nil, ErrRequestInProgress
	}
	key, err = e.queries.IdempotencyKeyLock(ctx, tx, &db.IdempotencyKeyLockParams{ID: key.ID, LockToken: &token})
	if err != nil {
		return nil, fmt.Errorf("locking idempotency key: %w", err)
	}
	return &Run{engine: e, key: key, workflow: wf}, nil
}

// applyPhase queues phase's statements on key in tx, then its result's
// update of the key, and calls the BeforeCommit hook. It returns the key
// the update returns, filled once the batch is sent, and the key as the
// update leaves it as far as Go knows it now (its recovery point and lock
// token), for resolveCommit.
func (e *Engine) applyPhase(ctx context.Context, tx *db.Pipeline, wf *Workflow, key *db.IdempotencyKey,
	phase PhaseFunc) (updated, attempted *db.IdempotencyKey, err error) {
	result, err := phase(ctx, tx, key)
	if err != nil {
		return nil, nil, err
	}
	if result == nil {
		return nil, nil, fmt.Errorf("workflow %q: phase at %s returned no result", wf.Name, key.RecoveryPoint)
	}
	updated, err = result.apply(ctx, e.queries, tx, wf, key)
	if err != nil {
		return nil, nil, err
	}
	expected := *key
	expected.RecoveryPoint = result.recoveryPoint()
	if expected.RecoveryPoint == RecoveryPointFinished {
		expected.LockToken = nil
	}
	if err := e.config.Hooks.beforeCommit(ctx, expected.RecoveryPoint); err != nil {
		return nil, nil, err
	}
	return updated, &expected, nil
}

func (e *Engine) observePhase(recoveryPoint string, start time.Time) {
	if e.config.ObservePhaseFunc != nil {
		e.config.ObservePhaseFunc(recoveryPoint, time.Since(start))
	}
}

// conflict turns retryable database errors that outlasted their retries into
// ErrConflict.
func (e *Engine) conflict(err error) error {
	if db.IsRetryable(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Run is one request's hold on a locked key, handed to each step.
type Run struct {
	engine   *Engine
	key      *db.IdempotencyKey
	replayed bool
	workflow *Workflow
}

// Key returns the key as of the last committed phase. Steps read it; they
// must not modify it.
func (r *Run) Key() *db.IdempotencyKey {
	return r.key
}

// AtomicPhase runs phase in a transaction of its own, after checking that
// this request still holds the key's lock (ErrLockLost otherwise), and
// applies the phase's result to the key in the same transaction. The lock
// check, the statements phase queues and the key's update are sent in one
// round trip with BEGIN and COMMIT; a lock lost makes PostgreSQL skip the
// rest.
func (r *Run) AtomicPhase(ctx context.Context, phase PhaseFunc) error {
	e := r.engine
	if err := e.config.Hooks.beforePhase(ctx, r.key.RecoveryPoint); err != nil {
		return err
	}
	start := time.Now()
	before := r.key.RecoveryPoint
	var attempted *db.IdempotencyKey
	key, err := db.WithPipelineV(ctx, e.exec, e.txOpts, func(ctx context.Context, tx *db.Pipeline) (*db.IdempotencyKey, error) {
		err := e.queries.IdempotencyKeyLockCheck(ctx, tx, &db.IdempotencyKeyLockCheckParams{
			ID:        r.key.ID,
			LockToken: *r.key.LockToken,
		})
		if err != nil {
			return nil, fmt.Errorf("checking idempotency key lock: %w", err)
		}
		var updated *db.IdempotencyKey
		updated, attempted, err = e.applyPhase(ctx, tx, r.workflow, r.key, phase)
		return updated, err
	})
	if db.IsLockNotHeld(err) {
		return ErrLockLost
	}
	if err != nil {
		if key = e.resolveCommit(ctx, err, before, attempted); key == nil {
			return e.conflict(err)
		}
	}
	e.observePhase(key.RecoveryPoint, start)
	lockToken := r.key.LockToken
	r.key = key
	if err := e.config.Hooks.afterCommit(ctx, key.RecoveryPoint); err != nil {
		// The key no longer shows the token once finished; unlock with the
		// token this request held.
		r.key.LockToken = lockToken
		return err
	}
	return nil
}

func (r *Run) step(ctx context.Context, phases *Phases) error {
	if r.key.RecoveryPoint == RecoveryPointStarted {
		return r.AtomicPhase(ctx, phases.Start)
	}
	step, ok := phases.Steps[r.key.RecoveryPoint]
	if !ok {
		return fmt.Errorf("workflow %q: %w %q", r.workflow.Name, ErrUnknownRecoveryPoint, r.key.RecoveryPoint)
	}
	return step(ctx, r)
}

func (r *Run) response(replayed bool) (*Response, error) {
	if r.key.ResponseCode == nil {
		return nil, fmt.Errorf("finished idempotency key %d has no response", r.key.ID)
	}
	return newResponse(int(*r.key.ResponseCode), r.key.ResponseBody, replayed)
}

func newResponse(status int, body json.RawMessage, replayed bool) (*Response, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, fmt.Errorf("compacting stored response: %w", err)
	}
	return &Response{Body: compact.Bytes(), Replayed: replayed, Status: status}, nil
}

// sameRequest reports whether req asks for what a key was first used for.
// Parameters are compared as JSON values: 0 and 0.0 are the same number, and
// the order of object keys does not matter.
func sameRequest(req *Request, method, path string, params json.RawMessage) bool {
	if req.Method != method || req.Path != path {
		return false
	}
	// Fast path: the stored jsonb, compacted, is usually byte for byte what
	// the same request sends again.
	var compact bytes.Buffer
	if json.Compact(&compact, params) == nil && bytes.Equal(compact.Bytes(), req.Params) {
		return true
	}
	var a, b any
	if json.Unmarshal(req.Params, &a) != nil || json.Unmarshal(params, &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

func (h *Hooks) afterCommit(ctx context.Context, recoveryPoint string) error {
	if h.AfterCommit == nil {
		return nil
	}
	return h.AfterCommit(ctx, recoveryPoint)
}

func (h *Hooks) beforeCommit(ctx context.Context, recoveryPoint string) error {
	if h.BeforeCommit == nil {
		return nil
	}
	return h.BeforeCommit(ctx, recoveryPoint)
}

func (h *Hooks) beforePhase(ctx context.Context, recoveryPoint string) error {
	if h.BeforePhase == nil {
		return nil
	}
	return h.BeforePhase(ctx, recoveryPoint)
}
