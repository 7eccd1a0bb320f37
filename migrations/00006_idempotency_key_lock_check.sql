-- The lock check of every phase after the key phase, as one statement that
-- fails: it row-locks the key while lock_token still owns its lock, and
-- raises SQLSTATE RR001 when it does not (another request took the key
-- over). The engine sends it first in each phase's pipeline, after BEGIN:
-- an error makes PostgreSQL skip every statement after it, so a request
-- whose lock was taken over writes nothing, although its writes were sent
-- in the same round trip. The engine maps RR001 to ErrLockLost
-- (db.IsLockNotHeld).

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION idempotency_key_lock_check(key_id bigint, token uuid)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM 1 FROM idempotency_keys WHERE id = key_id AND lock_token = token FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key % is not locked by token %', key_id, token
            USING ERRCODE = 'RR001';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down

DROP FUNCTION idempotency_key_lock_check(bigint, uuid);
