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
