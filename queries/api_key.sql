-- name: APIKeyInsert :one
INSERT INTO api_keys (hash, user_id)
VALUES (@hash, @user_id)
RETURNING *;

-- APIKeyGetWithUserAndIdempotencyKey authenticates a request in api_key mode
-- and reads its idempotency key in one round trip, as
-- UserGetWithIdempotencyKey does in demo mode. A revoked key is not found.
-- name: APIKeyGetWithUserAndIdempotencyKey :one
SELECT api_keys.hash,
    sqlc.embed(users),
    k.id AS key_id,
    k.recovery_point,
    k.request_method,
    k.request_path,
    k.request_params,
    k.response_code,
    k.response_body
FROM api_keys
JOIN users ON users.id = api_keys.user_id
LEFT JOIN idempotency_keys k
    ON k.user_id = users.id AND k.idempotency_key = @idempotency_key
WHERE api_keys.id = @id AND api_keys.revoked_at IS NULL;

-- name: APIKeyListByUser :many
SELECT * FROM api_keys WHERE user_id = @user_id ORDER BY id;

-- name: APIKeyRevoke :one
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = @id
RETURNING *;
