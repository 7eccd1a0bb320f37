-- name: UserGetByEmail :one
SELECT * FROM users WHERE email = @email;

-- name: UserGetByID :one
SELECT * FROM users WHERE id = @id;

-- UserGetWithIdempotencyKey authenticates a request and reads its key in one
-- round trip: a finished key is replayed without opening a transaction.
-- name: UserGetWithIdempotencyKey :one
SELECT sqlc.embed(users),
    k.id AS key_id,
    k.recovery_point,
    k.request_method,
    k.request_path,
    k.request_params,
    k.response_code,
    k.response_body
FROM users
LEFT JOIN idempotency_keys k
    ON k.user_id = users.id AND k.idempotency_key = @idempotency_key
WHERE users.email = @email;

-- name: UserUpsert :one
INSERT INTO users (email, stripe_customer_id)
VALUES (@email, @stripe_customer_id)
ON CONFLICT (email) DO UPDATE SET stripe_customer_id = excluded.stripe_customer_id
RETURNING *;
