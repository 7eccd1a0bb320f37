// Package idempotency runs an API request as a sequence of atomic phases over
// an idempotency key, so that a client can retry the request any number of
// times, across crashes of either side, and its effects happen once.
//
// This is the design of Stripe's idempotency keys as described in
// brandur.org/idempotency-keys, in Go over PostgreSQL.
//
// # Keys and recovery points
//
// A client sends each logical request with a key it generated
// (Idempotency-Key) and retries with the same key until it gets a definitive
// answer. The first attempt inserts a row in idempotency_keys. The row holds
// the request (method, path, parameters), a lock, and a recovery point: the
// name of the last phase that committed. A retry, or the completer, reads the
// recovery point and resumes with the phase after it. A finished key holds
// the response, which every later attempt gets back byte for byte.
//
// # Atomic phases
//
// The work between two calls to a foreign system (here, Stripe) is one atomic
// phase: one database transaction holding the phase's writes and the key's
// new recovery point, so they commit together or not at all. The foreign call
// itself is made with no transaction open: a network call inside a
// transaction would hold a connection, and locks, for as long as the network
// takes. A request's Phases are those of one endpoint's Workflow: Start,
// the first phase, and a StepFunc for each later recovery point. A step that calls a
// foreign system makes the call, then records its outcome in an atomic phase.
// The foreign call must itself be idempotent (Stripe's own idempotency key),
// because a crash after the call and before the commit repeats it.
//
// A phase returns a Result that is applied to the key inside its transaction:
// RecoveryPoint moves the key forward, Finish finishes it and stores the
// response.
//
// # Pipelined phases: one round trip each
//
// A phase does not run its statements: it queues them on a db.Pipeline, and
// the engine sends them with BEGIN, the lock check before them, the key's
// update after them and COMMIT, in one round trip. A phase calls sqlc's
// generated methods on it as on a transaction (queries.RideInsert(ctx, tx,
// ...)), with three rules:
//
//   - A value a queued query scans is filled when the batch is sent, after
//     the phase returned: it cannot decide the phase's Result, nor be an
//     argument of a later statement. Write dependent statements as one (a
//     CTE: the ride and its audit record), or let SQL find the row (by the
//     key's user and value), and build a response body from values Go has.
//   - A phase that must read before it decides calls tx.Flush(ctx): what is
//     queued is sent and answered, and the transaction stays open. That is
//     one more round trip (the cancel claim reads its ride's state).
//   - With a new key the start phase is queued after the key's INSERT, so
//     the key it gets has no ID or times yet: its statements name the key
//     by UserID and IdempotencyKey, never ID.
//
// A statement that fails makes PostgreSQL skip every statement after it in
// the pipeline, COMMIT included; a queued query that finds no row does not,
// so queue only queries that return their row or fail.
//
// # Locks
//
// A key is worked by one request at a time. The key phase takes the key's
// lock with a fresh random token; every later phase begins with
// idempotency_key_lock_check, which reads the key FOR UPDATE where the token
// still matches and raises SQLSTATE RR001 where it does not. The phase's
// writes are sent in the same round trip, but after it, so PostgreSQL skips
// them: a request whose lock was taken over (its lock grew older than the
// lock timeout, for example while it was stalled) writes nothing and answers
// ErrLockLost. On an
// error a request releases its lock, but only if it still owns it. A request
// that dies keeps its lock until the lock times out. Lock ages are compared
// with the database's clock, never the application's.
//
// # Isolation
//
// Phases run at READ COMMITTED by default, or SERIALIZABLE as configured. At
// READ COMMITTED, correctness rests on locks and constraints, never on a read
// that could go stale:
//
//   - a new key is a plain INSERT on the unique (user_id, idempotency_key),
//     so of two concurrent requests with the same new key the second waits
//     for the first to commit, fails with a unique violation that aborts
//     its start phase, and then finds the key locked in a transaction of
//     its own (ErrRequestInProgress);
//   - an existing key is read with SELECT … FOR UPDATE before it is checked
//     and locked, so two requests cannot both take it;
//   - every later phase starts with the lock-token check above, FOR UPDATE,
//     which also keeps the lock from changing hands until the phase commits;
//   - the schema allows one ride per key and one cancellation per ride
//     (unique constraints), whatever happens.
//
// SERIALIZABLE adds nothing to these guarantees and costs a great deal under
// load: PostgreSQL's predicate locks on B-tree indexes are page-grained, and
// every new key, ride and job lands on the same rightmost index pages, so
// unrelated requests conflict and must be retried. It stays available as a
// setting for those who want the stricter level everywhere. At either level,
// serialization failures and deadlocks are retried inside the request, with
// jittered backoff, a bounded number of times; only when the retries run out
// does the client get ErrConflict, and a retry with the same key is safe.
//
// # Replays without a transaction
//
// A finished key never changes, so a caller that has already read it (the
// API reads the user and the key in one query) passes it as Request.Known and
// the engine replays it without opening a transaction.
//
// # Foreign calls
//
// CallForeign makes a step's call to a foreign system that deduplicates by
// idempotency key for a limited window (Stripe: about 24 hours). The call
// carries an idempotency key derived from the key (stable across attempts);
// its error is sorted by the ForeignCall's Classify into ErrForeignDefinitive
// (the foreign system answered for good) or ErrForeignIndeterminate (the
// outcome is unknown). Past the window, the foreign idempotency key no
// longer protects, so a key resumed more than Window after it was created
// first asks Find for a result made earlier, and calls again only if there
// is none. Record the result in the next AtomicPhase.
//
// # Adding a workflow
//
// The runnable Example is the recipe in full: a two-phase POST /transfers
// with a foreign call. Package rides holds two real workflows, POST /rides
// (create.go) and POST /rides/{id}/cancel (cancel.go). The steps:
//
//  1. Register a Workflow with the engine (Engine.Register) before serving:
//     its Name, its RecoveryPoints, and Restore. The Name is stable and
//     stored on every key; by convention it is the method and route pattern,
//     "POST /rides/{id}/cancel". Renaming it strands unfinished keys.
//  2. Name the recovery points for the state a committed phase leaves
//     behind, past tense, at most 50 characters: "ride_created",
//     "ride_claimed". started and finished are the engine's. A phase may
//     move the key only to a point in the list (RecoveryPoint checks it,
//     before writing); no migration is needed for a new workflow. Never
//     remove a point while keys may still be at it.
//  3. Build each request's Phases: Start, then exactly one StepFunc per
//     recovery point. Work between two foreign calls is one AtomicPhase; the
//     foreign call itself goes through CallForeign, with no transaction
//     open. Phases may run more than once (a serialization failure retries
//     the transaction), so they only touch the database. A phase queues its
//     statements (see "Pipelined phases"): Start names its key in SQL by
//     user and value, values it scans are filled after it returns, and a
//     read it must decide on costs a tx.Flush. Keep what a phase read or
//     wrote in the request's state for the next step only if it is the
//     key's (compare the key's ID once committed): after a crash the
//     completer restores the phases from the key, and they read again.
//  4. Fill Request: Method, Path the CONCRETE path ("/rides/42/cancel",
//     never the pattern), and Params a JSON object of every parameter,
//     path parameters included ({"ride_id": 42, "reason": "..."}). A retry
//     must send the same method, path and parameters: the same key used for
//     ride 43 is ErrParamsMismatch, not ride 42's answer. Workflow is the
//     Name.
//  5. Decide for each outcome whether it is stored. Finish with a stored
//     response when retrying cannot change the answer: the success, and
//     definitive failures (a declined card, a refund refused for good, no
//     such ride). Return an error, which leaves the key at its recovery
//     point, unlocked, for the next attempt to resume, when it can: a foreign
//     outcome that is unknown (ErrForeignIndeterminate), or a state that
//     will settle (the ride to cancel is still being charged). A returned
//     error is never stored, so the API answers it with a Retry-After.
//  6. Restore rebuilds the Phases from the key alone: the completer has no
//     HTTP request, only the stored Params (so they must hold everything,
//     path parameters too) and the key's user. The completer finds every
//     abandoned key, reads its workflow's name, and calls Engine.Resume,
//     which restores the phases and drives them ResumeOnly. A key whose
//     workflow this binary does not register (a rolling deploy) is
//     ErrUnknownWorkflow: the completer skips it and counts it.
//  7. Make the resource enforce its own invariants with constraints. The
//     key makes one request happen once; it cannot stop two requests with
//     different keys from acting on the same resource. One cancellation per
//     ride is the unique ride_id of ride_cancellations, claimed in the first
//     phase after locking the ride and reading its state (so a second claim
//     waits, then sees the first and answers 409), not anything the engine
//     does; likewise one ride per key is a unique idempotency_key_id.
package idempotency
