-- Keys of any workflow. A key records the workflow it belongs to (its stable
-- name, the route pattern: 'POST /rides', 'POST /rides/{id}/cancel'), so the
-- completer resumes it through that workflow and skips one it does not know.
-- The recovery points are the workflow's own, validated by the engine against
-- the list the workflow registered: the schema no longer lists the ride
-- workflow's, so a new workflow needs no migration. The CHECKs tying
-- 'finished' to the response and the lock stay.

-- +goose Up

ALTER TABLE idempotency_keys
    ADD COLUMN workflow text NOT NULL DEFAULT 'POST /rides'
        CHECK (char_length(workflow) BETWEEN 1 AND 100);
-- Every existing key is a ride's; a new key always names its workflow.
ALTER TABLE idempotency_keys ALTER COLUMN workflow DROP DEFAULT;

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_point_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_recovery_point_check
    CHECK (char_length(recovery_point) BETWEEN 1 AND 50);

-- +goose Down

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_point_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_recovery_point_check
    CHECK (recovery_point IN ('started', 'ride_created', 'charge_created', 'finished'));
ALTER TABLE idempotency_keys DROP COLUMN workflow;
