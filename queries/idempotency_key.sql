-- IdempotencyKeyGetForUpdate reads an existing key and row-locks it for the
-- rest of the transaction. lock_live says whether another request holds a
-- lock younger than the lock timeout (idempotency_key_lock_live, the one
-- statement of that rule, in migration 00002).
-- name: IdempotencyKeyGetForUpdate :one
SELECT sqlc.embed(idempotency_keys),
    idempotency_key_lock_live(locked_at, sqlc.arg(lock_timeout_seconds)::float8)::boolean AS lock_live
FROM idempotency_keys
WHERE user_id = @user_id AND idempotency_key = @idempotency_key
FOR UPDATE;

-- IdempotencyKeyCreate creates a locked key, and fails with a unique
-- violation when the user already has a key with this value. The engine
-- sends it with the start phase's statements in one pipeline, so that the
-- violation aborts them: the request then takes the existing key's path.
-- name: IdempotencyKeyCreate :exec
INSERT INTO idempotency_keys (
    idempotency_key, locked_at, lock_token, recovery_point,
    request_method, request_params, request_path, user_id, workflow
) VALUES (
    @idempotency_key, now(), @lock_token, 'started',
    @request_method, @request_params, @request_path, @user_id, @workflow
);

-- IdempotencyKeyLockCheck fails with SQLSTATE RR001 unless lock_token still
-- owns the key's lock, and row-locks the key so the lock cannot change hands
-- before the transaction ends (idempotency_key_lock_check, migration 00006).
-- name: IdempotencyKeyLockCheck :exec
SELECT idempotency_key_lock_check(@id, @lock_token);

-- name: IdempotencyKeyLock :one
UPDATE idempotency_keys
SET locked_at = now(),
    lock_token = @lock_token,
    last_run_at = now(),
    run_count = run_count + 1
WHERE id = @id
RETURNING *;

-- IdempotencyKeySetRecoveryPointByKey is IdempotencyKeySetRecoveryPoint for
-- a key named by its user and value: a phase's pipeline names a key it
-- inserts itself before its id is known.
-- name: IdempotencyKeySetRecoveryPointByKey :one
UPDATE idempotency_keys
SET recovery_point = @recovery_point
WHERE user_id = @user_id AND idempotency_key = @idempotency_key
RETURNING *;

-- IdempotencyKeyFinishByKey is IdempotencyKeyFinish for a key named by its
-- user and value, as IdempotencyKeySetRecoveryPointByKey.
-- name: IdempotencyKeyFinishByKey :one
UPDATE idempotency_keys
SET recovery_point = 'finished',
    response_code = @response_code,
    response_body = @response_body,
    locked_at = NULL,
    lock_token = NULL
WHERE user_id = @user_id AND idempotency_key = @idempotency_key
RETURNING *;

-- IdempotencyKeyUnlockByKey is IdempotencyKeyUnlock for a key named by its
-- user and value: the engine releases a new key whose insert's answer was
-- lost, and whose id it never learned.
-- name: IdempotencyKeyUnlockByKey :execrows
UPDATE idempotency_keys
SET locked_at = NULL, lock_token = NULL
WHERE user_id = @user_id AND idempotency_key = @idempotency_key AND lock_token = @lock_token;

-- IdempotencyKeyGetAbandoned finds unfinished keys of the given workflows
-- that no request is working: older than the grace period, not run
-- recently, and unlocked or stale-locked (idempotency_key_lock_live, with
-- the engine's lock timeout). The wait since the last run doubles with every
-- run, up to 2^max_backoff_doublings times the threshold, so keys that keep
-- failing are retried less and less often.
-- name: IdempotencyKeyGetAbandoned :many
SELECT * FROM idempotency_keys
WHERE recovery_point <> 'finished'
    AND workflow = ANY(sqlc.arg(workflows)::text[])
    AND created_at < now() - make_interval(secs => sqlc.arg(grace_seconds)::float8)
    AND last_run_at < now() - make_interval(secs => sqlc.arg(last_run_threshold_seconds)::float8
        * power(2, least(run_count - 1, sqlc.arg(max_backoff_doublings)::integer)))
    AND NOT idempotency_key_lock_live(locked_at, sqlc.arg(lock_timeout_seconds)::float8)
ORDER BY created_at
LIMIT @max;

-- IdempotencyKeyGetAbandonedOtherWorkflows is IdempotencyKeyGetAbandoned for
-- the keys of every workflow NOT given: keys the completer must skip. Read
-- apart, they never fill the batch in place of keys it can drive.
-- name: IdempotencyKeyGetAbandonedOtherWorkflows :many
SELECT * FROM idempotency_keys
WHERE recovery_point <> 'finished'
    AND workflow <> ALL(sqlc.arg(workflows)::text[])
    AND created_at < now() - make_interval(secs => sqlc.arg(grace_seconds)::float8)
    AND last_run_at < now() - make_interval(secs => sqlc.arg(last_run_threshold_seconds)::float8
        * power(2, least(run_count - 1, sqlc.arg(max_backoff_doublings)::integer)))
    AND NOT idempotency_key_lock_live(locked_at, sqlc.arg(lock_timeout_seconds)::float8)
ORDER BY created_at
LIMIT @max;

-- IdempotencyKeyDeleteOlderThan deletes a batch of keys created before the
-- horizon, oldest first, and says how many of them had never finished.
-- name: IdempotencyKeyDeleteOlderThan :one
WITH deleted AS (
    DELETE FROM idempotency_keys
    WHERE id IN (
        SELECT id FROM idempotency_keys
        WHERE created_at < now() - make_interval(secs => sqlc.arg(horizon_seconds)::float8)
        ORDER BY created_at
        LIMIT @max
    )
    RETURNING recovery_point
)
SELECT count(*) AS num_deleted,
    count(*) FILTER (WHERE recovery_point <> 'finished') AS num_unfinished
FROM deleted;

-- IdempotencyKeyInsertFull inserts a key with every column given, for test
-- fixtures. Times left NULL are the database's now().
-- name: IdempotencyKeyInsertFull :one
INSERT INTO idempotency_keys (
    created_at, idempotency_key, last_run_at, locked_at, lock_token,
    recovery_point, request_method, request_params, request_path,
    response_code, response_body, run_count, user_id, workflow
) VALUES (
    coalesce(sqlc.narg(created_at)::timestamptz, now()), @idempotency_key,
    coalesce(sqlc.narg(last_run_at)::timestamptz, now()), @locked_at, @lock_token,
    @recovery_point, @request_method, @request_params, @request_path,
    @response_code, @response_body, @run_count, @user_id, @workflow
)
RETURNING *;

-- name: IdempotencyKeyGetByID :one
SELECT * FROM idempotency_keys WHERE id = @id;

-- IdempotencyKeyListWithOutcome reads a page of keys, in id order after
-- after_id (keyset pagination), each with what it made: its ride's charge,
-- if any, and its cancellation's time, if any.
-- name: IdempotencyKeyListWithOutcome :many
SELECT k.id, k.workflow, k.recovery_point, k.response_code, r.stripe_charge_id AS ride_stripe_charge_id,
    c.cancelled_at AS cancellation_cancelled_at
FROM idempotency_keys k
LEFT JOIN rides r ON r.idempotency_key_id = k.id
LEFT JOIN ride_cancellations c ON c.idempotency_key_id = k.id
WHERE k.id > @after_id
ORDER BY k.id
LIMIT @max;

-- name: IdempotencyKeyGetByUserIDAndKey :one
SELECT * FROM idempotency_keys WHERE user_id = @user_id AND idempotency_key = @idempotency_key;

-- IdempotencyKeyGetWithLockLive reads a key for inspection, with whether its
-- lock is live (idempotency_key_lock_live, with the engine's lock timeout)
-- and the database's clock, against which the lock's age is measured.
-- name: IdempotencyKeyGetWithLockLive :one
SELECT sqlc.embed(idempotency_keys),
    idempotency_key_lock_live(locked_at, sqlc.arg(lock_timeout_seconds)::float8)::boolean AS lock_live,
    now()::timestamptz AS now
FROM idempotency_keys
WHERE id = @id;
