-- The one statement of the rule "a key's lock is stale once it is older than
-- the lock timeout". The engine asks it before taking a key over
-- (IdempotencyKeyGetForUpdate), and the completer before driving one
-- (IdempotencyKeyGetAbandoned), both with the engine's lock timeout, so the
-- two can never disagree on whether a request still holds its key.
--
-- The timeout is an argument, not a setting stored here, because it is the
-- engine's (LOCK_TIMEOUT). The time is the database's clock, never the
-- caller's. A plain SQL expression, IMMUTABLE apart from now() and so STABLE:
-- PostgreSQL inlines it into each query, so it plans as if written there.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION idempotency_key_lock_live(locked_at timestamptz, lock_timeout_seconds double precision)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(locked_at > now() - make_interval(secs => lock_timeout_seconds), false);
-- +goose StatementEnd

-- +goose Down

DROP FUNCTION idempotency_key_lock_live(timestamptz, double precision);
