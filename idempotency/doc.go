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
// takes. A Workflow lists the phases of one endpoint: Start, the first
// phase, and a StepFunc for each later recovery point. A step that calls a
// foreign system makes the call, then records its outcome in an atomic phase.
// The foreign call must itself be idempotent (Stripe's own idempotency key),
// because a crash after the call and before the commit repeats it.
//
// A phase returns a Result that is applied to the key inside its transaction:
// RecoveryPoint moves the key forward, Finish finishes it and stores the
// response.
//
// # Locks
//
// A key is worked by one request at a time. The key phase takes the key's
// lock with a fresh random token; every later phase begins by reading the key
// FOR UPDATE where the token still matches, so a request whose lock was taken
// over (its lock grew older than the lock timeout, for example while it was
// stalled) stops without writing anything and answers ErrLockLost. On an
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
//   - a new key is inserted with INSERT … ON CONFLICT DO NOTHING on the
//     unique (user_id, idempotency_key), so of two concurrent requests with
//     the same new key the second waits for the first to commit and then
//     finds its row locked (ErrRequestInProgress);
//   - an existing key is read with SELECT … FOR UPDATE before it is checked
//     and locked, so two requests cannot both take it;
//   - every later phase starts with the lock-token check above, FOR UPDATE,
//     which also keeps the lock from changing hands until the phase commits;
//   - the schema allows one ride per key (a unique constraint), whatever
//     happens.
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
package idempotency
