package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// Messages of the responses that tests check word for word.
const (
	detailConflict = "Conflict detected with a concurrent request. Please retry with the same Idempotency-Key."
	detailDeclined = "Error from payment processor: Your card was declined."
	detailInternal = "Internal server error. Please retry the request periodically with the same Idempotency-Key until it succeeds."
)

// TestCreateRideOriginal holds the 17 cases of the original's
// spec/api_spec.rb, in its order, with its names.
func TestCreateRideOriginal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("PassesForNewKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()

		body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

		ride := bundle.requireRideCharged(t, bundle.user, value, body)
		require.Len(t, bundle.fake.Charges(), 1)
		var action, originIP string
		var data json.RawMessage
		err := bundle.exec.QueryRow(ctx,
			"SELECT action, host(origin_ip), data FROM audit_records WHERE resource_type = 'ride' AND resource_id = $1", ride.ID).
			Scan(&action, &originIP, &data)
		require.NoError(t, err)
		require.Equal(t, rides.AuditActionRideCreated, action)
		require.Equal(t, clientIP, originIP)
		require.JSONEq(t, string(testfactory.ValidParams), string(data))
	})

	t.Run("ReturnsStoredResult", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointFinished),
			ResponseCode:  testfactory.Ptr(int32(http.StatusCreated)),
			ResponseBody:  json.RawMessage(`{"message": "hello"}`),
		})

		recorder := bundle.post(bundle.user, key.IdempotencyKey, validForm())

		require.Equal(t, http.StatusCreated, recorder.Code)
		require.Equal(t, `{"message":"hello"}`, recorder.Body.String())
		require.Equal(t, "true", recorder.Header().Get("Idempotent-Replayed"))
		require.Zero(t, bundle.fake.ChargeRequests(), "a replay never reaches Stripe")
	})

	t.Run("PassesForUnlockedKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("PassesForStaleLockedKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			LockedAt: testfactory.Ptr(bundle.dbNow(t).Add(-idempotency.LockTimeoutDefault - time.Second)),
		})

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("StoresResultForPermanentFailure", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		// The key belongs to the paying user; the declined user's request
		// with the same value is a request of its own.
		other := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)
		value := other.IdempotencyKey

		first := bundle.post(bundle.declined, value, validForm())

		details := requireProblem(t, first, http.StatusPaymentRequired, "card-declined")
		require.Equal(t, detailDeclined, details.Detail)
		key := bundle.key(t, bundle.declined, value)
		require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
		require.Equal(t, int32(http.StatusPaymentRequired), *key.ResponseCode)
		require.Nil(t, key.LockedAt)
		require.Nil(t, bundle.ride(t, key).StripeChargeID)
		require.Empty(t, bundle.receipts(t, bundle.ride(t, key)))
		require.Equal(t, *other, *bundle.key(t, bundle.user, value), "the other user's key is untouched")

		requireReplay(t, first, bundle.post(bundle.declined, value, validForm()))
		require.Equal(t, 1, bundle.fake.ChargeRequests(), "the replay never reaches Stripe")
	})

	t.Run("ContinuesFromStarted", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointStarted),
		})

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
		require.Equal(t, int32(2), bundle.key(t, bundle.user, key.IdempotencyKey).RunCount)
	})

	t.Run("ContinuesFromRideCreated", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated),
		})
		ride := testfactory.Ride(ctx, t, bundle.exec, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		require.Equal(t, ride.ID, body.Ride.ID, "the ride of the earlier attempt")
		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("ContinuesFromChargeCreated", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointChargeCreated),
		})
		chargeID := "ch_" + testfactory.KeyValue()
		ride := testfactory.Ride(ctx, t, bundle.exec, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID, StripeChargeID: &chargeID})

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		require.Equal(t, ride.ID, body.Ride.ID)
		require.Equal(t, &chargeID, body.Ride.StripeChargeID)
		require.Zero(t, bundle.fake.ChargeRequests(), "the charge was made before")
		finished := bundle.key(t, bundle.user, key.IdempotencyKey)
		require.Equal(t, idempotency.RecoveryPointFinished, finished.RecoveryPoint)
		require.Equal(t, int32(http.StatusCreated), *finished.ResponseCode)
		require.Len(t, bundle.receipts(t, ride), 1)
	})

	t.Run("DeniesMissingAuthentication", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()

		r := newFormRequest("", value, validForm())
		r.Header.Set("Authorization", "")
		details := requireProblem(t, bundle.serve(r), http.StatusUnauthorized, "auth-required")
		require.Equal(t, "Please specify credentials in the Authorization header.", details.Detail)
		requireProblem(t, bundle.serve(newFormRequest("", value, validForm())), http.StatusUnauthorized, "auth-required")
		bundle.requireNoKey(t, bundle.user, value)
	})

	t.Run("DeniesInvalidAuthentication", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)

		details := requireProblem(t, bundle.serve(newFormRequest("bad-user@example.com", testfactory.KeyValue(), validForm())),
			http.StatusUnauthorized, "auth-invalid")
		require.Equal(t, "Credentials in Authorization were invalid.", details.Detail)
		// The email must match exactly.
		requireProblem(t, bundle.serve(newFormRequest(strings.ToUpper(bundle.user.Email), testfactory.KeyValue(), validForm())),
			http.StatusUnauthorized, "auth-invalid")
	})

	t.Run("DeniesMissingKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)

		r := newFormRequest(bundle.user.Email, "", validForm())
		r.Header.Set("Idempotency-Key", "")
		details := requireProblem(t, bundle.serve(r), http.StatusBadRequest, "invalid-idempotency-key")
		require.Equal(t, "Please specify an idempotency key with the Idempotency-Key header.", details.Detail)
		requireProblem(t, bundle.serve(newFormRequest(bundle.user.Email, "", validForm())), http.StatusBadRequest, "invalid-idempotency-key")
	})

	t.Run("DeniesShortKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)

		details := requireProblem(t, bundle.post(bundle.user, "xxx", validForm()), http.StatusBadRequest, "invalid-idempotency-key")
		require.Equal(t, "Idempotency-Key must be at least 20 characters long.", details.Detail)
		bundle.requireNoKey(t, bundle.user, "xxx")
	})

	t.Run("DeniesMissingParameters", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()

		details := requireProblem(t, bundle.serve(newRequest(bundle.user.Email, value, "application/x-www-form-urlencoded", "")),
			http.StatusUnprocessableEntity, "invalid-parameter")
		require.Equal(t, "Please specify parameter 'origin_lat'.", details.Detail)
		bundle.requireNoKey(t, bundle.user, value)
	})

	t.Run("DeniesParamsMismatch", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)
		form := validForm()
		form.Set("origin_lat", "10.0")

		details := requireProblem(t, bundle.post(bundle.user, key.IdempotencyKey, form), http.StatusUnprocessableEntity, "idempotency-key-reused")
		require.Equal(t, "There was a mismatch between this request's parameters and the parameters of a previously stored request with the same Idempotency-Key.", details.Detail)
		require.Equal(t, *key, *bundle.key(t, bundle.user, key.IdempotencyKey), "the key is untouched")
		require.Zero(t, bundle.fake.ChargeRequests())
	})

	t.Run("DeniesRequestInFlight", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			LockedAt: testfactory.Ptr(bundle.dbNow(t).Add(-idempotency.LockTimeoutDefault + time.Second)),
		})

		recorder := bundle.post(bundle.user, key.IdempotencyKey, validForm())

		details := requireProblem(t, recorder, http.StatusConflict, "request-in-progress")
		require.Equal(t, "An API request with the same Idempotency-Key is already in progress.", details.Detail)
		require.Equal(t, "2", recorder.Header().Get("Retry-After"))
		require.Equal(t, *key, *bundle.key(t, bundle.user, key.IdempotencyKey), "the lock is left to its owner")
	})

	t.Run("UnlocksKeyOnSerializationFailure", func(t *testing.T) {
		t.Parallel()
		const maxAttempts = 3
		var failing atomic.Bool
		var calls atomic.Int32
		bundle := setup(t, &setupOpts{engine: &idempotency.EngineConfig{
			Hooks: &idempotency.Hooks{BeforeCommit: func(context.Context, string) error {
				if !failing.Load() {
					return nil
				}
				calls.Add(1)
				return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
			}},
			MaxAttempts: maxAttempts,
		}})
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)
		failing.Store(true)

		recorder := bundle.post(bundle.user, key.IdempotencyKey, validForm())

		details := requireProblem(t, recorder, http.StatusConflict, "conflict")
		require.Equal(t, detailConflict, details.Detail)
		require.Equal(t, "1", recorder.Header().Get("Retry-After"))
		require.Equal(t, int32(maxAttempts), calls.Load(), "retried in the request, a bounded number of times")
		requireUnlockedAt(t, bundle.key(t, bundle.user, key.IdempotencyKey), idempotency.RecoveryPointStarted)

		failing.Store(false)
		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))
		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("UnlocksKeyOnInternalError", func(t *testing.T) {
		t.Parallel()
		var failing atomic.Bool
		var calls atomic.Int32
		bundle := setup(t, &setupOpts{engine: &idempotency.EngineConfig{
			Hooks: &idempotency.Hooks{BeforeCommit: func(context.Context, string) error {
				if !failing.Load() {
					return nil
				}
				calls.Add(1)
				return errors.New("the disk is on fire")
			}},
		}})
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, nil)
		failing.Store(true)

		recorder := bundle.post(bundle.user, key.IdempotencyKey, validForm())

		details := requireProblem(t, recorder, http.StatusInternalServerError, "internal")
		require.Equal(t, detailInternal, details.Detail)
		require.NotContains(t, recorder.Body.String(), "fire")
		require.Equal(t, int32(1), calls.Load(), "an internal error is not retried in the request")
		requireUnlockedAt(t, bundle.key(t, bundle.user, key.IdempotencyKey), idempotency.RecoveryPointStarted)

		failing.Store(false)
		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))
		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})
}

// TestCreateRide covers what the original's suite did not.
func TestCreateRide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ChargeCreatedWithinStripeIdempotencyWindow", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt:     testfactory.Ptr(bundle.dbNow(t).Add(-23 * time.Hour)),
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated),
		})
		testfactory.Ride(ctx, t, bundle.exec, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		require.Equal(t, 1, bundle.fake.ChargeRequests(), "within the window, Stripe's idempotency key suffices")
		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("ChargeFoundAfterStripeIdempotencyWindow", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		// A key created 25 hours ago, left at ride_created by an attempt
		// whose charge went through before it died.
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt:     testfactory.Ptr(bundle.dbNow(t).Add(-25 * time.Hour)),
			LastRunAt:     testfactory.Ptr(bundle.dbNow(t).Add(-25 * time.Hour)),
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated),
		})
		ride := testfactory.Ride(ctx, t, bundle.exec, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
		earlier, err := bundle.chargeAsRides(bundle.user, key, ride)
		require.NoError(t, err)
		// Another charge of the customer's, for another key, must not be
		// taken for it.
		_, err = bundle.stripe.ChargeCreate(ctx, &stripeclient.ChargeParams{
			Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, Customer: bundle.user.StripeCustomerID,
			Description: "Another ride", IdempotencyKey: testfactory.KeyValue(),
			Metadata: map[string]string{rides.MetadataIdempotencyKey: "rocket-rides-" + testfactory.KeyValue()},
		})
		require.NoError(t, err)

		body := requireCreated(t, bundle.post(bundle.user, key.IdempotencyKey, validForm()))

		require.Equal(t, earlier.ID, *body.Ride.StripeChargeID)
		require.Len(t, bundle.fake.Charges(), 2, "no new charge")
		require.Equal(t, 2, bundle.fake.ChargeRequests(), "the earlier charge was looked up, not created again")
		bundle.requireRideCharged(t, bundle.user, key.IdempotencyKey, body)
	})

	t.Run("ChargeRejected", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		// A customer Stripe does not know: a definitive 400.
		user := testfactory.User(ctx, t, bundle.exec, nil)
		value := testfactory.KeyValue()

		first := bundle.post(user, value, validForm())

		details := requireProblem(t, first, http.StatusServiceUnavailable, "payment-rejected")
		require.Equal(t, "Error from payment processor. Please contact support.", details.Detail)
		require.Empty(t, first.Header().Get("Retry-After"))
		key := bundle.key(t, user, value)
		require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
		require.Equal(t, int32(http.StatusServiceUnavailable), *key.ResponseCode)

		requireReplay(t, first, bundle.post(user, value, validForm()))
		require.Equal(t, 1, bundle.fake.ChargeRequests())
	})

	t.Run("ChargeResponseLost", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()
		bundle.fake.SetFailureRates(0, 1)

		recorder := bundle.post(bundle.user, value, validForm())

		requireProblem(t, recorder, http.StatusServiceUnavailable, "payment-unavailable")
		require.Equal(t, "5", recorder.Header().Get("Retry-After"))
		require.Len(t, bundle.fake.Charges(), 1, "Stripe made the charge; its answer was lost")
		key := bundle.key(t, bundle.user, value)
		requireUnlockedAt(t, key, rides.RecoveryPointRideCreated)
		require.Nil(t, bundle.ride(t, key).StripeChargeID)

		bundle.fake.SetFailureRates(0, 0)
		body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

		require.Len(t, bundle.fake.Charges(), 1, "the retry found the charge again")
		require.Equal(t, bundle.fake.Charges()[0].ID, *body.Ride.StripeChargeID)
		bundle.requireRideCharged(t, bundle.user, value, body)
	})

	t.Run("ChargeWithoutAnswer", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()
		bundle.fake.SetFailureRates(1, 0)

		recorder := bundle.post(bundle.user, value, validForm())

		details := requireProblem(t, recorder, http.StatusServiceUnavailable, "payment-unavailable")
		require.Equal(t, "The payment processor could not be reached. Please retry with the same Idempotency-Key.", details.Detail)
		require.Equal(t, "5", recorder.Header().Get("Retry-After"))
		require.Empty(t, bundle.fake.Charges())
		requireUnlockedAt(t, bundle.key(t, bundle.user, value), rides.RecoveryPointRideCreated)

		bundle.fake.SetFailureRates(0, 0)
		body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

		require.Len(t, bundle.fake.Charges(), 1)
		bundle.requireRideCharged(t, bundle.user, value, body)
	})

	t.Run("DeclineFoundAfterStripeIdempotencyWindow", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		// The earlier attempt's charge was declined, and the attempt died
		// before it could store the 402.
		key := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.declined, &testfactory.IdempotencyKeyOpts{
			CreatedAt:     testfactory.Ptr(bundle.dbNow(t).Add(-25 * time.Hour)),
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated),
		})
		ride := testfactory.Ride(ctx, t, bundle.exec, bundle.declined, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
		_, err := bundle.chargeAsRides(bundle.declined, key, ride)
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeDeclined, outcome)

		first := bundle.post(bundle.declined, key.IdempotencyKey, validForm())

		details := requireProblem(t, first, http.StatusPaymentRequired, "card-declined")
		require.Equal(t, detailDeclined, details.Detail)
		require.Equal(t, 1, bundle.fake.ChargeRequests(), "the declined charge was looked up, not tried again")
		require.Nil(t, bundle.ride(t, key).StripeChargeID)
		require.Equal(t, int32(http.StatusPaymentRequired), *bundle.key(t, bundle.declined, key.IdempotencyKey).ResponseCode)
		requireReplay(t, first, bundle.post(bundle.declined, key.IdempotencyKey, validForm()))
	})

	t.Run("KeysScopedPerUser", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		other := newUser(t, bundle.exec, bundle.stripe, "tok_visa")
		value := testfactory.KeyValue()
		otherForm := validForm()
		otherForm.Set("origin_lat", "45.5")

		first := requireCreated(t, bundle.post(bundle.user, value, validForm()))
		second := requireCreated(t, bundle.post(other, value, otherForm))

		require.NotEqual(t, first.Ride.ID, second.Ride.ID)
		require.Equal(t, 45.5, second.Ride.OriginLat)
		require.Len(t, bundle.fake.Charges(), 2)
		bundle.requireRideCharged(t, bundle.user, value, first)
		bundle.requireRideCharged(t, other, value, second)
	})

	t.Run("LockTakenOver", func(t *testing.T) {
		t.Parallel()
		var (
			bundle    *testBundle
			value     string
			takeover  bool
			takenOver *httptest.ResponseRecorder
		)
		// Right after the first request's key phase, its lock grows stale
		// (by the database's clock) and a second request takes the key over
		// and finishes it. The first request then charges (Stripe answers
		// with the same charge) and must not write.
		afterCommit := func(_ context.Context, recoveryPoint string) error {
			if recoveryPoint != rides.RecoveryPointRideCreated || takeover {
				return nil
			}
			takeover = true
			_, err := bundle.exec.Exec(ctx,
				"UPDATE idempotency_keys SET locked_at = now() - make_interval(secs => $1) WHERE user_id = $2 AND idempotency_key = $3",
				(idempotency.LockTimeoutDefault + time.Second).Seconds(), bundle.user.ID, value)
			if err != nil {
				return err
			}
			takenOver = bundle.post(bundle.user, value, validForm())
			return nil
		}
		bundle = setup(t, &setupOpts{engine: &idempotency.EngineConfig{Hooks: &idempotency.Hooks{AfterCommit: afterCommit}}})
		value = testfactory.KeyValue()

		recorder := bundle.post(bundle.user, value, validForm())

		details := requireProblem(t, recorder, http.StatusConflict, "conflict")
		require.Equal(t, detailConflict, details.Detail)
		require.Equal(t, "1", recorder.Header().Get("Retry-After"))
		body := requireCreated(t, takenOver)
		require.Len(t, bundle.fake.Charges(), 1)
		require.Equal(t, 2, bundle.fake.ChargeRequests())
		bundle.requireRideCharged(t, bundle.user, value, body)
		key := bundle.key(t, bundle.user, value)
		require.Equal(t, int32(2), key.RunCount)
		requireReplay(t, takenOver, bundle.post(bundle.user, value, validForm()))
	})

	t.Run("RaiseError", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()
		form := validForm()
		form.Set("raise_error", "true")

		recorder := bundle.post(bundle.user, value, form)

		details := requireProblem(t, recorder, http.StatusInternalServerError, "internal")
		require.Equal(t, detailInternal, details.Detail)
		key := bundle.key(t, bundle.user, value)
		requireUnlockedAt(t, key, rides.RecoveryPointRideCreated)
		require.Nil(t, bundle.ride(t, key).StripeChargeID)
		require.Zero(t, bundle.fake.ChargeRequests(), "the failure comes before the charge")

		body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

		require.Len(t, bundle.fake.Charges(), 1)
		bundle.requireRideCharged(t, bundle.user, value, body)
	})

	t.Run("ReplaysByteForByte", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()
		first := bundle.post(bundle.user, value, validForm())
		requireCreated(t, first)

		requireReplay(t, first, bundle.post(bundle.user, value, validForm()))
		// The same parameters written differently are the same request.
		same := `{"target_lon": 0, "target_lat": 0.0, "origin_lon": -0.0, "origin_lat": 0e3}`
		requireReplay(t, first, bundle.serve(newRequest(bundle.user.Email, value, "application/json", same)))
		require.Equal(t, 1, bundle.fake.ChargeRequests())

		// Other parameters are not, even once the key is finished.
		form := validForm()
		form.Set("target_lon", "1")
		requireProblem(t, bundle.post(bundle.user, value, form), http.StatusUnprocessableEntity, "idempotency-key-reused")
	})
}

// TestRoutes covers the routes other than POST /rides.
func TestRoutes(t *testing.T) {
	t.Parallel()

	t.Run("Healthz", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		recorder := bundle.serve(httptest.NewRequest(http.MethodGet, "/healthz", nil))
		require.Equal(t, http.StatusOK, recorder.Code)
		require.JSONEq(t, `{"status":"ok"}`, recorder.Body.String())
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			requireProblem(t, bundle.serve(httptest.NewRequest(method, rides.RequestPath, nil)), http.StatusMethodNotAllowed, "method-not-allowed")
		}
	})

	// Every route, those added later included, answers a method it does
	// not have, OPTIONS among them, with the same 405 and the same Allow:
	// the route's methods.
	t.Run("AllowListsTheRouteMethods", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{api: &api.ServerConfig{Metrics: metrics.New()}})
		routeMethods := make(map[string][]string)
		for _, route := range bundle.server.Routes() {
			routeMethods[route.Path] = append(routeMethods[route.Path], route.Method)
		}
		require.Contains(t, routeMethods, rides.RequestPath)
		require.NotContains(t, routeMethods, "/metrics", "metrics are on the operator's listener")
		for path, methods := range routeMethods {
			// A path parameter (":id") takes any value.
			target := regexp.MustCompile(`:[^/]+`).ReplaceAllString(path, "1")
			var tried int
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace} {
				if slices.Contains(methods, method) {
					continue
				}
				tried++
				recorder := bundle.serve(httptest.NewRequest(method, target, nil))
				requireProblem(t, recorder, http.StatusMethodNotAllowed, "method-not-allowed")
				allow := strings.Split(recorder.Header().Get("Allow"), ", ")
				require.ElementsMatch(t, methods, allow, "%s %s", method, path)
			}
			require.NotZero(t, tried, path)
		}
	})

	// A panic answers a 500 problem, not a dropped connection.
	t.Run("Panic", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{engine: &idempotency.EngineConfig{Hooks: &idempotency.Hooks{
			BeforeCommit: func(context.Context, string) error { panic("boom") },
		}}})
		recorder := bundle.post(bundle.user, testfactory.KeyValue(), validForm())
		details := requireProblem(t, recorder, http.StatusInternalServerError, "internal")
		require.NotContains(t, details.Detail, "boom")
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		requireProblem(t, bundle.serve(httptest.NewRequest(http.MethodGet, "/nowhere", nil)), http.StatusNotFound, "not-found")
		r := newFormRequest(bundle.user.Email, testfactory.KeyValue(), validForm())
		r.URL.Path = rides.RequestPath + "/1/unknown" // /rides/1 is GET's, /rides/1/cancel POST's
		requireProblem(t, bundle.serve(r), http.StatusNotFound, "not-found")
	})

	t.Run("Readyz", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		recorder := bundle.serve(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		require.Equal(t, http.StatusOK, recorder.Code)
		require.JSONEq(t, `{"status":"ready"}`, recorder.Body.String())
	})

	t.Run("ReadyzNotReady", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, &setupOpts{api: &api.ServerConfig{Ready: func(context.Context) error { return errors.New("connection refused") }}})
		recorder := bundle.serve(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		details := requireProblem(t, recorder, http.StatusServiceUnavailable, "not-ready")
		require.NotContains(t, details.Detail, "refused")
	})
}
