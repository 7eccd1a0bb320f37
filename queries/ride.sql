-- name: RideInsert :one
INSERT INTO rides (
    idempotency_key_id, origin_lat, origin_lon, target_lat, target_lon, user_id
) VALUES (
    @idempotency_key_id, @origin_lat, @origin_lon, @target_lat, @target_lon, @user_id
)
RETURNING *;

-- name: RideGetByIdempotencyKeyID :one
SELECT * FROM rides WHERE idempotency_key_id = @idempotency_key_id;

-- name: RideSetStripeChargeID :one
UPDATE rides
SET stripe_charge_id = @stripe_charge_id
WHERE id = @id
RETURNING *;

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

-- RideGetWithState reads the user's ride (no row for another user's) with
-- what its status depends on: its cancellation, if any, and its key's state,
-- if the key still exists.
-- name: RideGetWithState :one
SELECT sqlc.embed(rides),
    c.stripe_refund_id AS cancellation_stripe_refund_id,
    c.cancelled_at AS cancellation_cancelled_at,
    k.recovery_point AS key_recovery_point
FROM rides
LEFT JOIN ride_cancellations c ON c.ride_id = rides.id
LEFT JOIN idempotency_keys k ON k.id = rides.idempotency_key_id
WHERE rides.id = @id AND rides.user_id = @user_id;
