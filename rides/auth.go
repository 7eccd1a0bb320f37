package rides

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
)

// AuthMode is how Authenticate reads a request's credential, the value of
// its Authorization header.
type AuthMode string

// Authentication modes.
const (
	// AuthModeAPIKey takes "Bearer <key>", a per-user API key made by
	// CreateAPIKey: the mode for production, and the default.
	AuthModeAPIKey AuthMode = "api_key"

	// AuthModeDemo takes the user's email, the original's demo credential:
	// anyone who knows a rider's email can charge the rider's card. For
	// demos and tests only.
	AuthModeDemo AuthMode = "demo"
)

// ErrUnauthenticated means a request's credential authenticates no user: an
// unknown email, an unknown, revoked or malformed API key, a wrong secret,
// or a credential of the other mode. Which one is in the error's text, for
// the log; the client is told none of it.
var ErrUnauthenticated = errors.New("credentials invalid")

// API keys are "rr_<id>_<secret>": the prefix names the issuer (and lets
// secret scanners find leaked keys), the id is the api_keys row's, and the
// secret is 32 random bytes in lowercase hex.
const (
	apiKeyPrefix      = "rr_"
	apiKeySecretBytes = 32
)

// AuthMode is the mode Authenticate runs in.
func (c *Creator) AuthMode() AuthMode {
	return c.config.AuthMode
}

// Authenticate finds the user whose credential authorization is (the
// Authorization header's value, read as c.AuthMode() says) and, in the same
// round trip, the user's idempotency key with the given value, if any (nil
// otherwise). Every credential that authenticates no user gives
// ErrUnauthenticated, whatever the reason.
func (c *Creator) Authenticate(ctx context.Context, authorization, idempotencyKey string) (*db.User, *idempotency.KnownKey, error) {
	if c.config.AuthMode == AuthModeDemo {
		return c.authenticateEmail(ctx, authorization, idempotencyKey)
	}
	return c.authenticateAPIKey(ctx, authorization, idempotencyKey)
}

// authenticateEmail authenticates the user whose email is email. An email
// that PostgreSQL's text cannot hold (not UTF-8, or with a NUL byte), or a
// credential with a scheme (an API key sent to a demo server), is no user's.
func (c *Creator) authenticateEmail(ctx context.Context, email, idempotencyKey string) (*db.User, *idempotency.KnownKey, error) {
	if !utf8.ValidString(email) || strings.ContainsAny(email, "\x00 ") {
		return nil, nil, fmt.Errorf("%w: not an email", ErrUnauthenticated)
	}
	row, err := c.queries.UserGetWithIdempotencyKey(ctx, c.exec, &db.UserGetWithIdempotencyKeyParams{
		Email:          email,
		IdempotencyKey: idempotencyKey,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: unknown email", ErrUnauthenticated)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("authenticating user: %w", err)
	}
	return &row.User, knownKey(row.KeyID, row.RecoveryPoint, row.RequestMethod, row.RequestPath, row.RequestParams, row.ResponseCode, row.ResponseBody), nil
}

// authenticateAPIKey authenticates "Bearer rr_<id>_<secret>": it reads the
// key by id, with its user and idempotency key, and compares the secret's
// hash with the stored one in constant time. The hash is computed and
// compared whether or not the key exists, so the answer's timing says
// little about which ids exist.
func (c *Creator) authenticateAPIKey(ctx context.Context, authorization, idempotencyKey string) (*db.User, *idempotency.KnownKey, error) {
	scheme, token, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, nil, fmt.Errorf("%w: not a Bearer credential", ErrUnauthenticated)
	}
	id, secret, ok := parseAPIKey(strings.TrimLeft(token, " "))
	if !ok {
		return nil, nil, fmt.Errorf("%w: malformed API key", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(secret))
	row, err := c.queries.APIKeyGetWithUserAndIdempotencyKey(ctx, c.exec, &db.APIKeyGetWithUserAndIdempotencyKeyParams{
		ID:             id,
		IdempotencyKey: idempotencyKey,
	})
	found := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("authenticating API key: %w", err)
	}
	stored := make([]byte, sha256.Size) // no key: compare with zeros
	if found {
		stored = row.Hash
	}
	match := subtle.ConstantTimeCompare(sum[:], stored) == 1
	switch {
	case !found:
		return nil, nil, fmt.Errorf("%w: API key %d unknown or revoked", ErrUnauthenticated, id)
	case !match:
		return nil, nil, fmt.Errorf("%w: API key %d: wrong secret", ErrUnauthenticated, id)
	}
	return &row.User, knownKey(row.KeyID, row.RecoveryPoint, row.RequestMethod, row.RequestPath, row.RequestParams, row.ResponseCode, row.ResponseBody), nil
}

// knownKey is the idempotency key read with the user, nil if there is none
// (its columns are all null).
func knownKey(id *int64, recoveryPoint, method, path *string, params []byte, code *int32, body []byte) *idempotency.KnownKey {
	if id == nil {
		return nil
	}
	known := &idempotency.KnownKey{
		Method:        *method,
		Params:        params,
		Path:          *path,
		RecoveryPoint: *recoveryPoint,
		ResponseBody:  body,
	}
	if code != nil {
		known.ResponseCode = *code
	}
	return known
}

// parseAPIKey splits "rr_<id>_<secret>" into its id and secret, reporting
// whether token has that form: a positive decimal id without leading zeros,
// and a secret of 64 lowercase hex digits.
func parseAPIKey(token string) (int64, string, bool) {
	rest, ok := strings.CutPrefix(token, apiKeyPrefix)
	if !ok {
		return 0, "", false
	}
	idText, secret, ok := strings.Cut(rest, "_")
	if !ok || idText == "" || idText[0] < '1' || idText[0] > '9' || len(secret) != 2*apiKeySecretBytes {
		return 0, "", false
	}
	for _, digit := range []byte(idText) {
		if digit < '0' || digit > '9' {
			return 0, "", false
		}
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return 0, "", false
	}
	for _, digit := range []byte(secret) {
		if (digit < '0' || digit > '9') && (digit < 'a' || digit > 'f') {
			return 0, "", false
		}
	}
	return id, secret, true
}

// CreateAPIKey makes a new API key for the user userID and returns it with
// its row. The key is returned this once: only the SHA-256 of its secret is
// stored.
//
// SHA-256, not bcrypt or argon2: a slow hash protects a password, which a
// person chose and an attacker can guess, by making each guess costly. This
// secret is 256 random bits, which no number of guesses finds, so a slow
// hash would add no protection; it would only cost tens of milliseconds of
// CPU on every request (a replay costs well under one), and hand anyone who
// sends bad keys an easy way to load the server.
func CreateAPIKey(ctx context.Context, exec db.DBTX, userID int64) (string, *db.APIKey, error) {
	secret := make([]byte, apiKeySecretBytes)
	_, _ = rand.Read(secret) // crypto/rand never fails: it crashes the program first
	secretHex := hex.EncodeToString(secret)
	sum := sha256.Sum256([]byte(secretHex))
	row, err := db.New().APIKeyInsert(ctx, exec, &db.APIKeyInsertParams{Hash: sum[:], UserID: userID})
	if err != nil {
		return "", nil, fmt.Errorf("inserting API key of user %d: %w", userID, err)
	}
	return apiKeyPrefix + strconv.FormatInt(row.ID, 10) + "_" + secretHex, row, nil
}
