-- RideCancellationInsert inserts a claim of a ride by key id, or returns no
-- row when the ride already has one: for test fixtures (the cancel workflow
-- claims with RideCancellationClaim, in the pipeline that may insert its
-- key).
-- name: RideCancellationInsert :one
INSERT INTO ride_cancellations (idempotency_key_id, reason, ride_id, user_id)
VALUES (@idempotency_key_id, @reason, @ride_id, @user_id)
ON CONFLICT (ride_id) DO NOTHING
RETURNING *;

-- RideCancellationClaim claims a ride for the user's key idempotency_key,
-- found by its user and value (the key may be inserted in the same
-- pipeline). A ride already claimed is a unique violation, which aborts the
-- transaction: the cancel workflow locks the ride and reads its state
-- before, so it finishes with 409 instead.
-- name: RideCancellationClaim :one
INSERT INTO ride_cancellations (idempotency_key_id, reason, ride_id, user_id)
SELECT k.id, @reason, @ride_id, k.user_id
FROM idempotency_keys k
WHERE k.user_id = @user_id AND k.idempotency_key = @idempotency_key
RETURNING *;

-- RideCancellationGetWithRideByIdempotencyKeyID reads the key's claim with
-- its ride: what the refund needs when a request resumes at ride_claimed.
-- name: RideCancellationGetWithRideByIdempotencyKeyID :one
SELECT sqlc.embed(ride_cancellations), sqlc.embed(rides)
FROM ride_cancellations
JOIN rides ON rides.id = ride_cancellations.ride_id
WHERE ride_cancellations.idempotency_key_id = @idempotency_key_id;

-- name: RideCancellationGetByIdempotencyKeyID :one
SELECT * FROM ride_cancellations WHERE idempotency_key_id = @idempotency_key_id;

-- name: RideCancellationGetByRideID :one
SELECT * FROM ride_cancellations WHERE ride_id = @ride_id;

-- RideCancellationSetRefund records the refund: the ride is cancelled at
-- cancelled_at. The caller sets the time (to the microsecond, as stored) so
-- that its response can show it without reading it back.
-- name: RideCancellationSetRefund :exec
UPDATE ride_cancellations
SET stripe_refund_id = @stripe_refund_id, cancelled_at = @cancelled_at
WHERE id = @id;

-- RideCancellationDelete releases a claim whose refund Stripe refused for
-- good: the ride stays charged, and a later request may try again.
-- name: RideCancellationDelete :exec
DELETE FROM ride_cancellations WHERE id = @id AND cancelled_at IS NULL;

-- RideCancellationListWithRideCharge reads a page of cancellations and
-- claims, in id order after after_id (keyset pagination), each with its
-- ride's charge: what reconcile compares with Stripe's refunds.
-- name: RideCancellationListWithRideCharge :many
SELECT c.id, c.ride_id, c.stripe_refund_id, c.cancelled_at, r.stripe_charge_id AS ride_stripe_charge_id
FROM ride_cancellations c
JOIN rides r ON r.id = c.ride_id
WHERE c.id > @after_id
ORDER BY c.id
LIMIT @max;

-- RideCancellationListWithRideChargeByRideIDs reads the cancellations and
-- claims of the rides ride_ids, as RideCancellationListWithRideCharge does:
-- reconcile's second look at refunds that the first read did not explain.
-- name: RideCancellationListWithRideChargeByRideIDs :many
SELECT c.id, c.ride_id, c.stripe_refund_id, c.cancelled_at, r.stripe_charge_id AS ride_stripe_charge_id
FROM ride_cancellations c
JOIN rides r ON r.id = c.ride_id
WHERE c.ride_id = ANY(@ride_ids::bigint[])
ORDER BY c.id;
