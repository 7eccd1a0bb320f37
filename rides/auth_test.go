package rides_test

import (
	"context"
	"crypto/sha256"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
)

// newAuthCreator returns a creator in mode on exec, with no Stripe:
// authentication needs none.
func newAuthCreator(t *testing.T, exec db.Executor, mode rides.AuthMode) *rides.Creator {
	t.Helper()
	engine, err := idempotency.NewEngine(exec, nil)
	require.NoError(t, err)
	creator, err := rides.NewCreator(exec, engine, nil, &rides.CreatorConfig{AuthMode: mode})
	require.NoError(t, err)
	return creator
}

func TestAuthenticateAPIKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	setupKey := func(t *testing.T) (*rides.Creator, db.Savepoint, *db.User, string) {
		t.Helper()
		exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
		user := testfactory.User(ctx, t, exec, nil)
		token, _, err := rides.CreateAPIKey(ctx, exec, user.ID)
		require.NoError(t, err)
		return newAuthCreator(t, exec, rides.AuthModeAPIKey), exec, user, token
	}

	t.Run("StoresOnlyTheHash", func(t *testing.T) {
		t.Parallel()
		exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
		user := testfactory.User(ctx, t, exec, nil)
		token, key, err := rides.CreateAPIKey(ctx, exec, user.ID)
		require.NoError(t, err)
		require.Regexp(t, regexp.MustCompile(`^rr_`+strconv.FormatInt(key.ID, 10)+`_[0-9a-f]{64}$`), token)
		secret := token[strings.LastIndexByte(token, '_')+1:]
		sum := sha256.Sum256([]byte(secret))
		require.Equal(t, sum[:], key.Hash)
		require.Equal(t, user.ID, key.UserID)
		require.Nil(t, key.RevokedAt)

		other, _, err := rides.CreateAPIKey(ctx, exec, user.ID)
		require.NoError(t, err)
		require.NotEqual(t, secret, other[strings.LastIndexByte(other, '_')+1:], "each key has a fresh secret")
	})

	t.Run("Authenticates", func(t *testing.T) {
		t.Parallel()
		creator, exec, user, token := setupKey(t)
		require.Equal(t, rides.AuthModeAPIKey, creator.AuthMode())
		for _, authorization := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token} {
			got, known, err := creator.Authenticate(ctx, authorization, testfactory.KeyValue())
			require.NoError(t, err, authorization)
			require.Equal(t, user, got)
			require.Nil(t, known)
		}

		// In the same round trip, the user's key with the value asked for.
		key := testfactory.IdempotencyKey(ctx, t, exec, user, &testfactory.IdempotencyKeyOpts{RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated)})
		got, known, err := creator.Authenticate(ctx, "Bearer "+token, key.IdempotencyKey)
		require.NoError(t, err)
		require.Equal(t, user, got)
		require.NotNil(t, known)
		require.Equal(t, rides.RecoveryPointRideCreated, known.RecoveryPoint)

		// Another user's key value is not this user's.
		otherUser := testfactory.User(ctx, t, exec, nil)
		otherKey := testfactory.IdempotencyKey(ctx, t, exec, otherUser, nil)
		_, known, err = creator.Authenticate(ctx, "Bearer "+token, otherKey.IdempotencyKey)
		require.NoError(t, err)
		require.Nil(t, known)
	})

	t.Run("Rejects", func(t *testing.T) {
		t.Parallel()
		creator, exec, user, token := setupKey(t)
		id, secret, _ := strings.Cut(strings.TrimPrefix(token, "rr_"), "_")
		wrongSecret := "rr_" + id + "_" + strings.Repeat("0", 64)
		flipped := []byte(secret) // the last hex digit changed
		flipped[63] = map[bool]byte{true: '1', false: '0'}[flipped[63] == '0']

		revokedToken, revoked, err := rides.CreateAPIKey(ctx, exec, user.ID)
		require.NoError(t, err)
		_, err = db.New().APIKeyRevoke(ctx, exec, revoked.ID)
		require.NoError(t, err)

		for name, authorization := range map[string]string{
			"WrongSecret":       "Bearer " + wrongSecret,
			"OneDigitOff":       "Bearer rr_" + id + "_" + string(flipped),
			"Revoked":           "Bearer " + revokedToken,
			"UnknownID":         "Bearer rr_999999999_" + secret,
			"BareToken":         token,
			"BareEmail":         user.Email,
			"OtherScheme":       "Basic " + token,
			"SchemeOnly":        "Bearer",
			"EmptyToken":        "Bearer ",
			"NoPrefix":          "Bearer " + strings.TrimPrefix(token, "rr_"),
			"LeadingZero":       "Bearer rr_0" + id + "_" + secret,
			"PlusSign":          "Bearer rr_+" + id + "_" + secret,
			"ZeroID":            "Bearer rr_0_" + secret,
			"IDOverflow":        "Bearer rr_99999999999999999999_" + secret,
			"UppercaseSecret":   "Bearer rr_" + id + "_" + strings.ToUpper(secret),
			"ShortSecret":       "Bearer " + token[:len(token)-1],
			"LongSecret":        "Bearer " + token + "0",
			"TrailingSpace":     "Bearer " + token + " ",
			"SecretWithNUL":     "Bearer " + token[:len(token)-1] + "\x00",
			"NotUTF8":           "Bearer " + token[:len(token)-1] + "\xff",
			"EmailAsBearerCred": "Bearer " + user.Email,
		} {
			got, known, err := creator.Authenticate(ctx, authorization, "")
			require.ErrorIs(t, err, rides.ErrUnauthenticated, name)
			require.Nil(t, got, name)
			require.Nil(t, known, name)
		}
	})
}

func TestAuthenticateDemo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
	user := testfactory.User(ctx, t, exec, nil)
	token, _, err := rides.CreateAPIKey(ctx, exec, user.ID)
	require.NoError(t, err)
	creator := newAuthCreator(t, exec, rides.AuthModeDemo)
	require.Equal(t, rides.AuthModeDemo, creator.AuthMode())

	got, known, err := creator.Authenticate(ctx, user.Email, testfactory.KeyValue())
	require.NoError(t, err)
	require.Equal(t, user, got)
	require.Nil(t, known)

	for name, authorization := range map[string]string{
		"UnknownEmail":  "nobody-" + testfactory.KeyValue() + "@example.com",
		"OtherCase":     strings.ToUpper(user.Email),
		"APIKey":        "Bearer " + token,
		"BearerEmail":   "Bearer " + user.Email,
		"EmailWithNUL":  user.Email + "\x00",
		"EmailNotUTF8":  user.Email + "\xff",
		"TrailingSpace": user.Email + " ",
	} {
		got, known, err := creator.Authenticate(ctx, authorization, "")
		require.ErrorIs(t, err, rides.ErrUnauthenticated, name)
		require.Nil(t, got, name)
		require.Nil(t, known, name)
	}
}

func TestNewCreatorAuthMode(t *testing.T) {
	t.Parallel()
	newEngine := func() *idempotency.Engine {
		engine, err := idempotency.NewEngine(nil, nil)
		require.NoError(t, err)
		return engine
	}
	creator, err := rides.NewCreator(nil, newEngine(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, rides.AuthModeAPIKey, creator.AuthMode(), "API keys unless demo mode is asked for by name")

	_, err = rides.NewCreator(nil, newEngine(), nil, &rides.CreatorConfig{AuthMode: "email"})
	require.ErrorContains(t, err, `ride creator: AuthMode must be "api_key" or "demo", got "email"`)
}
