package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/rides"
)

// TestAuthAPIKey covers what only api_key mode does; the rest of the suite
// runs in both modes.
func TestAuthAPIKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// failing are credentials that authenticate nobody in api_key mode,
	// for bundle's user.
	failing := func(t *testing.T, bundle *testBundle) map[string]string {
		t.Helper()
		token := bundle.apiKeys[bundle.user.ID]
		id, secret, _ := strings.Cut(strings.TrimPrefix(token, "rr_"), "_")
		return map[string]string{
			"WrongSecret":    "Bearer rr_" + id + "_" + strings.Repeat("0", len(secret)),
			"UnknownKey":     bundle.unknownAuth(),
			"Revoked":        bundle.revokedAuth(t, bundle.user),
			"OtherUsersID":   "Bearer rr_" + strings.Split(bundle.apiKeys[bundle.declined.ID], "_")[1] + "_" + secret,
			"BareEmail":      bundle.user.Email,
			"BareKey":        token,
			"BasicScheme":    "Basic " + token,
			"SchemeOnly":     "Bearer",
			"MalformedKey":   "Bearer rr_" + id,
			"TruncatedKey":   "Bearer " + token[:len(token)-1],
			"UppercasedKey":  "Bearer " + strings.ToUpper(token),
			"KeyWithNUL":     "Bearer " + token + "\x00",
			"KeyNotUTF8":     "Bearer " + token[:len(token)-1] + "\xff",
			"NonDecimalID":   "Bearer rr_0x" + id + "_" + secret,
			"OverflowingID":  "Bearer rr_99999999999999999999_" + secret,
			"EmptyBearerKey": "Bearer ",
		}
	}

	// Every failure answers the same 401, byte for byte, with the Bearer
	// challenge, before any other check: a missing body, a bad key or
	// content type tell nothing about which keys exist.
	t.Run("EveryFailureAnswersTheSame401First", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeAPIKey})
		var want string
		for name, authorization := range failing(t, bundle) {
			for _, r := range []*http.Request{
				newFormRequest(authorization, testfactory.KeyValue(), validForm()),
				newRequest(authorization, testfactory.KeyValue(), "application/x-www-form-urlencoded", ""),
				newRequest(authorization, "short", "text/plain", "x"),
				newRequest(authorization, "", "", ""),
			} {
				recorder := bundle.serve(r)
				requireProblem(t, recorder, http.StatusUnauthorized, "auth-invalid")
				require.Equal(t, `Bearer realm="rocketrides"`, recorder.Header().Get("WWW-Authenticate"), name)
				if want == "" {
					want = recorder.Body.String()
				}
				require.Equal(t, want, recorder.Body.String(), name)
			}
		}
		require.Zero(t, bundle.fake.ChargeRequests())
		var keys int
		require.NoError(t, bundle.exec.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE user_id = $1", bundle.user.ID).Scan(&keys))
		require.Zero(t, keys)
	})

	t.Run("MissingCredentialHasTheChallenge", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeAPIKey})
		recorder := bundle.serve(newFormRequest("", testfactory.KeyValue(), validForm()))
		requireProblem(t, recorder, http.StatusUnauthorized, "auth-required")
		require.Equal(t, `Bearer realm="rocketrides"`, recorder.Header().Get("WWW-Authenticate"))
	})

	// A revoked key stops working at once, for new requests and replays.
	t.Run("RevokedKeyStopsReplays", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeAPIKey})
		token, key, err := rides.CreateAPIKey(ctx, bundle.exec, bundle.user.ID)
		require.NoError(t, err)
		value := testfactory.KeyValue()
		first := bundle.serve(newFormRequest("Bearer "+token, value, validForm()))
		requireCreated(t, first)
		requireReplay(t, first, bundle.serve(newFormRequest("Bearer "+token, value, validForm())))

		_, err = db.New().APIKeyRevoke(ctx, bundle.exec, key.ID)
		require.NoError(t, err)
		requireProblem(t, bundle.serve(newFormRequest("Bearer "+token, value, validForm())), http.StatusUnauthorized, "auth-invalid")
		requireProblem(t, bundle.serve(newFormRequest("Bearer "+token, testfactory.KeyValue(), validForm())), http.StatusUnauthorized, "auth-invalid")
		// The user's other key still works, and sees the same request.
		requireReplay(t, first, bundle.post(bundle.user, value, validForm()))
	})

	// Idempotency keys are the user's, not the API key's: another key of
	// the same user replays the request; another user's key does not.
	t.Run("IdempotencyKeysScopedPerUser", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeAPIKey})
		value := testfactory.KeyValue()
		first := bundle.post(bundle.user, value, validForm())
		requireCreated(t, first)

		second, _, err := rides.CreateAPIKey(ctx, bundle.exec, bundle.user.ID)
		require.NoError(t, err)
		requireReplay(t, first, bundle.serve(newFormRequest("Bearer "+second, value, validForm())))

		other := bundle.post(bundle.declined, value, validForm())
		require.Equal(t, http.StatusPaymentRequired, other.Code, "body: %s", other.Body)
		require.Empty(t, other.Header().Get("Idempotent-Replayed"))
	})

	// The log says why a credential failed, for the operator, and never
	// shows a secret.
	t.Run("LogsTheReasonNotTheSecret", func(t *testing.T) {
		t.Parallel()
		logs := &syncBuffer{}
		bundle := setup(t, &setupOpts{auth: rides.AuthModeAPIKey, api: &api.ServerConfig{Logger: slog.New(slog.NewTextHandler(logs, nil))}})
		token := bundle.apiKeys[bundle.user.ID]
		id, secret, _ := strings.Cut(strings.TrimPrefix(token, "rr_"), "_")
		wrong := strings.Repeat("1", len(secret))
		requireProblem(t, bundle.serve(newFormRequest("Bearer rr_"+id+"_"+wrong, testfactory.KeyValue(), validForm())), http.StatusUnauthorized, "auth-invalid")
		requireCreated(t, bundle.post(bundle.user, testfactory.KeyValue(), validForm()))

		require.Contains(t, logs.String(), `msg="api: authentication failed" error="credentials invalid: API key `+id+`: wrong secret"`)
		require.NotContains(t, logs.String(), secret)
		require.NotContains(t, logs.String(), wrong)
	})
}

// TestAuthDemo covers what only demo mode does.
func TestAuthDemo(t *testing.T) {
	t.Parallel()

	// An API key is no email: a demo server refuses it, without the
	// Bearer challenge, which it does not take.
	t.Run("RejectsBearer", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeDemo})
		for _, authorization := range []string{
			"Bearer " + bundle.apiKeys[bundle.user.ID],
			"Bearer " + bundle.user.Email,
			bundle.apiKeys[bundle.user.ID],
		} {
			recorder := bundle.serve(newFormRequest(authorization, testfactory.KeyValue(), validForm()))
			requireProblem(t, recorder, http.StatusUnauthorized, "auth-invalid")
			require.Empty(t, recorder.Header().Get("WWW-Authenticate"))
		}
		require.Zero(t, bundle.fake.ChargeRequests())
	})

	// An unknown email answers the 401 before any other check.
	t.Run("UnknownEmailFirst", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{auth: rides.AuthModeDemo})
		for _, r := range []*http.Request{
			newRequest(bundle.unknownAuth(), testfactory.KeyValue(), "application/x-www-form-urlencoded", ""),
			newRequest(bundle.unknownAuth(), "", "", ""),
		} {
			details := requireProblem(t, bundle.serve(r), http.StatusUnauthorized, "auth-invalid")
			require.Equal(t, "Credentials in Authorization were invalid.", details.Detail)
		}
	})
}
