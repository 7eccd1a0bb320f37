-- RideCancellationInsert claims a ride for cancellation, or returns no row
-- when the ride already has a cancellation (a concurrent claim waits for the
-- other transaction instead of failing on the unique index).
-- name: RideCancellationInsert :one
INSERT INTO ride_cancellations (idempotency_key_id, reason, ride_id, user_id)
VALUES (@idempotency_key_id, @reason, @ride_id, @user_id)
ON CONFLICT (ride_id) DO NOTHING
RETURNING *;

-- name: RideCancellationGetByIdempotencyKeyID :one
SELECT * FROM ride_cancellations WHERE idempotency_key_id = @idempotency_key_id;

-- name: RideCancellationGetByRideID :one
SELECT * FROM ride_cancellations WHERE ride_id = @ride_id;

-- RideCancellationSetRefund records the refund: the ride is cancelled.
-- name: RideCancellationSetRefund :one
UPDATE ride_cancellations
SET stripe_refund_id = @stripe_refund_id, cancelled_at = now()
WHERE id = @id
RETURNING *;

-- RideCancellationDelete releases a claim whose refund Stripe refused for
-- good: the ride stays charged, and a later request may try again.
-- name: RideCancellationDelete :exec
DELETE FROM ride_cancellations WHERE id = @id AND cancelled_at IS NULL;
