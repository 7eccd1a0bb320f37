-- name: RideInsert :one
INSERT INTO rides (
    idempotency_key_id, origin_lat, origin_lon, target_lat, target_lon, user_id
) VALUES (
    @idempotency_key_id, @origin_lat, @origin_lon, @target_lat, @target_lon, @user_id
)
RETURNING *;

-- RideInsertForKey inserts the ride of the user's key idempotency_key and
-- its audit record (action, resource ride), in one statement. It finds the
-- key by its user and value, so that the start phase can send it in the
-- pipeline that inserts the key, before the key's id is known.
-- name: RideInsertForKey :one
WITH ride AS (
    INSERT INTO rides (idempotency_key_id, origin_lat, origin_lon, target_lat, target_lon, user_id)
    SELECT k.id, @origin_lat, @origin_lon, @target_lat, @target_lon, k.user_id
    FROM idempotency_keys k
    WHERE k.user_id = @user_id AND k.idempotency_key = @idempotency_key
    RETURNING *
), audit AS (
    INSERT INTO audit_records (action, data, origin_ip, resource_id, resource_type, user_id)
    SELECT @action, @data, @origin_ip, ride.id, 'ride', ride.user_id
    FROM ride
)
SELECT * FROM ride;

-- name: RideGetByIdempotencyKeyID :one
SELECT * FROM rides WHERE idempotency_key_id = @idempotency_key_id;

-- name: RideSetStripeChargeID :one
UPDATE rides
SET stripe_charge_id = @stripe_charge_id
WHERE id = @id
RETURNING *;

-- RideListWithCustomerAndKeyByIDs reads the rides ids, as
-- RideListWithCustomerAndKey does: reconcile's second look at the rides of
-- charges that the first read did not explain.
-- name: RideListWithCustomerAndKeyByIDs :many
SELECT r.id, r.stripe_charge_id, u.stripe_customer_id,
    k.id AS key_id, k.recovery_point AS key_recovery_point, k.response_code AS key_response_code
FROM rides r
JOIN users u ON u.id = r.user_id
LEFT JOIN idempotency_keys k ON k.id = r.idempotency_key_id
WHERE r.id = ANY(@ids::bigint[])
ORDER BY r.id;

-- RideListWithCustomerAndKey reads a page of rides, in id order after
-- after_id (keyset pagination), each with its user's Stripe customer and
-- its key's state, if the key still exists.
-- name: RideListWithCustomerAndKey :many
SELECT r.id, r.stripe_charge_id, u.stripe_customer_id,
    k.id AS key_id, k.recovery_point AS key_recovery_point, k.response_code AS key_response_code
FROM rides r
JOIN users u ON u.id = r.user_id
LEFT JOIN idempotency_keys k ON k.id = r.idempotency_key_id
WHERE r.id > @after_id
ORDER BY r.id
LIMIT @max;

-- name: RideGetByID :one
SELECT * FROM rides WHERE id = @id;

-- RideLockForUpdate row-locks the user's ride, so that two claims of one
-- ride take turns: the cancel workflow locks it, then reads its state in a
-- statement of its own, which at READ COMMITTED sees every claim committed
-- before the lock was granted.
-- name: RideLockForUpdate :exec
SELECT id FROM rides WHERE id = @id AND user_id = @user_id FOR UPDATE;

-- RideGetWithState reads the user's ride (no row for another user's) with
-- what its status depends on: its cancellation or claim, if any, and its
-- key's state, if the key still exists.
-- name: RideGetWithState :one
SELECT sqlc.embed(rides),
    c.id AS cancellation_id,
    c.stripe_refund_id AS cancellation_stripe_refund_id,
    c.cancelled_at AS cancellation_cancelled_at,
    k.recovery_point AS key_recovery_point
FROM rides
LEFT JOIN ride_cancellations c ON c.ride_id = rides.id
LEFT JOIN idempotency_keys k ON k.id = rides.idempotency_key_id
WHERE rides.id = @id AND rides.user_id = @user_id;
