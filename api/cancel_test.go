package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
)

// newCancelRequest is a POST /rides/{rideID}/cancel from the user with
// email, under key, with body of contentType. An empty email, key or
// contentType leaves its header out.
func newCancelRequest(email, key, rideID, contentType, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/rides/"+rideID+"/cancel", strings.NewReader(body))
	if email != "" {
		r.Header.Set("Authorization", email)
	}
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// cancel sends POST /rides/{ride.ID}/cancel as user, with no body.
func (b *testBundle) cancel(user *db.User, key string, ride *db.Ride) *httptest.ResponseRecorder {
	return b.serve(newCancelRequest(user.Email, key, itoa(ride.ID), "", ""))
}

// getRide sends GET /rides/{rideID} as user.
func (b *testBundle) getRide(user *db.User, rideID string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/rides/"+rideID, nil)
	r.Header.Set("Authorization", user.Email)
	return b.serve(r)
}

// chargedRide creates a ride of user's through POST /rides and returns it,
// charged.
func (b *testBundle) chargedRide(t *testing.T, user *db.User) *db.Ride {
	t.Helper()
	value := testfactory.KeyValue()
	requireCreated(t, b.post(user, value, validForm()))
	return b.ride(t, b.key(t, user, value))
}

// requireCancelled requires a first 200 cancelling ride, and the state the
// cancel workflow leaves: one full refund on Stripe with the key's Stripe
// idempotency key and metadata, the cancellation recorded with it, one
// audit record, one staged cancellation receipt. It returns the body.
func (b *testBundle) requireCancelled(t *testing.T, recorder *httptest.ResponseRecorder, user *db.User, value string, ride *db.Ride) *rides.CancelledBody {
	t.Helper()
	ctx := context.Background()
	require.Equal(t, http.StatusOK, recorder.Code, "body: %s", recorder.Body)
	require.Equal(t, "application/json", recorder.Header().Get("Content-Type"))
	var body rides.CancelledBody
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &body))
	require.Equal(t, rides.MessageCancelled, body.Message)
	require.Equal(t, rides.StatusCancelled, body.Ride.Status)
	require.Equal(t, ride.ID, body.Ride.ID)
	require.Equal(t, ride.StripeChargeID, body.Ride.StripeChargeID)
	require.NotNil(t, body.Ride.CancelledAt)

	key := b.key(t, user, value)
	require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
	require.Equal(t, rides.WorkflowCancel, key.Workflow)
	require.Equal(t, rides.CancelPath(ride.ID), key.RequestPath)
	stripeKey := rides.StripeIdempotencyKey(key)
	var refunds []stripefake.Refund
	for _, refund := range b.fake.Refunds() {
		if refund.Charge == *ride.StripeChargeID {
			refunds = append(refunds, refund)
		}
	}
	require.Len(t, refunds, 1, "refunds of the ride's charge")
	refund := refunds[0]
	require.Equal(t, int64(rides.ChargeAmount), refund.Amount, "the full charge")
	require.Equal(t, stripeKey, refund.IdempotencyKey)
	require.Equal(t, map[string]string{
		rides.MetadataIdempotencyKey:   stripeKey,
		rides.MetadataIdempotencyKeyID: itoa(key.ID),
		rides.MetadataRideID:           itoa(ride.ID),
	}, refund.Metadata)
	require.Equal(t, refund.ID, *body.Ride.StripeRefundID)

	cancellation, err := db.New().RideCancellationGetByRideID(ctx, b.exec, ride.ID)
	require.NoError(t, err)
	require.Equal(t, key.ID, *cancellation.IdempotencyKeyID)
	require.Equal(t, refund.ID, *cancellation.StripeRefundID)

	var numAudits int
	require.NoError(t, b.exec.QueryRow(ctx, "SELECT count(*) FROM audit_records WHERE action = $1 AND resource_id = $2",
		rides.AuditActionRideCancelled, ride.ID).Scan(&numAudits))
	require.Equal(t, 1, numAudits)
	rows, err := b.exec.Query(ctx, "SELECT job_args FROM staged_jobs WHERE job_name = $1 AND (job_args->>'ride_id')::bigint = $2",
		rides.JobNameSendCancellationReceipt, ride.ID)
	require.NoError(t, err)
	var receipts []rides.CancellationReceiptArgs
	for rows.Next() {
		var args rides.CancellationReceiptArgs
		require.NoError(t, rows.Scan(&args))
		receipts = append(receipts, args)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []rides.CancellationReceiptArgs{{
		Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, StripeRefundID: refund.ID, UserID: user.ID,
	}}, receipts)
	return &body
}

func TestCancelRide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CancelsAndReplays", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		value := testfactory.KeyValue()

		first := bundle.cancel(bundle.user, value, ride)
		bundle.requireCancelled(t, first, bundle.user, value, ride)

		requireReplay(t, first, bundle.cancel(bundle.user, value, ride))
		require.Len(t, bundle.fake.Refunds(), 1)

		got := bundle.getRide(bundle.user, itoa(ride.ID))
		require.Equal(t, http.StatusOK, got.Code)
		var state rides.RideStateBody
		require.NoError(t, json.Unmarshal(got.Body.Bytes(), &state))
		require.Equal(t, rides.StatusCancelled, state.Status)
		require.Equal(t, bundle.fake.Refunds()[0].ID, *state.StripeRefundID)
	})

	t.Run("Reason", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		for _, tt := range []struct{ contentType, body, want string }{
			{"application/x-www-form-urlencoded", "reason=" + url.QueryEscape("weather on Mars"), "weather on Mars"},
			{"application/json", `{"reason": "pilot ill"}`, "pilot ill"},
			{"application/json", `{"reason": null}`, ""},
			{"application/json", `{}`, ""},
			{"application/json", "", ""},
			{"", "", ""},
		} {
			ride := bundle.chargedRide(t, bundle.user)
			recorder := bundle.serve(newCancelRequest(bundle.user.Email, testfactory.KeyValue(), itoa(ride.ID), tt.contentType, tt.body))
			require.Equal(t, http.StatusOK, recorder.Code, "%s %q: %s", tt.contentType, tt.body, recorder.Body)
			cancellation, err := db.New().RideCancellationGetByRideID(ctx, bundle.exec, ride.ID)
			require.NoError(t, err)
			if tt.want == "" {
				require.Nil(t, cancellation.Reason)
			} else {
				require.Equal(t, tt.want, *cancellation.Reason)
			}
		}
	})

	t.Run("InvalidReason", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		for _, tt := range []struct{ contentType, body string }{
			{"application/x-www-form-urlencoded", "reason=" + strings.Repeat("é", rides.MaxReasonLength+1)},
			{"application/x-www-form-urlencoded", "reason=a&reason=b"},
			{"application/x-www-form-urlencoded", "reason=%00"},
			{"application/x-www-form-urlencoded", "reason=%FF"},
			{"application/json", `{"reason": "a", "reason": null}`},
			{"application/json", `{"reason": 7}`},
		} {
			value := testfactory.KeyValue()
			recorder := bundle.serve(newCancelRequest(bundle.user.Email, value, itoa(ride.ID), tt.contentType, tt.body))
			requireProblem(t, recorder, http.StatusUnprocessableEntity, "invalid-parameter")
			bundle.requireNoKey(t, bundle.user, value)
		}
		// At most 500 characters, not bytes.
		recorder := bundle.serve(newCancelRequest(bundle.user.Email, testfactory.KeyValue(), itoa(ride.ID),
			"application/x-www-form-urlencoded", "reason="+strings.Repeat("é", rides.MaxReasonLength)))
		require.Equal(t, http.StatusOK, recorder.Code, "body: %s", recorder.Body)
		requireProblem(t, bundle.serve(newCancelRequest(bundle.user.Email, testfactory.KeyValue(), itoa(ride.ID),
			"application/json", `[]`)), http.StatusBadRequest, "malformed-body")
		requireProblem(t, bundle.serve(newCancelRequest(bundle.user.Email, testfactory.KeyValue(), itoa(ride.ID),
			"text/plain", `reason`)), http.StatusUnsupportedMediaType, "unsupported-media-type")
	})

	// An id that is not a positive integer names no ride: 404, as for a
	// ride that does not exist, never a 400 or 500.
	t.Run("InvalidRideID", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		for _, id := range []string{"abc", "0", "-1", "01", "+1", "1.0", "99999999999999999999", "%20"} {
			value := testfactory.KeyValue()
			requireProblem(t, bundle.serve(newCancelRequest(bundle.user.Email, value, id, "", "")), http.StatusNotFound, "ride-not-found")
			bundle.requireNoKey(t, bundle.user, value)
			requireProblem(t, bundle.getRide(bundle.user, id), http.StatusNotFound, "ride-not-found")
		}
	})

	t.Run("AuthAndKeyAsForRides", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		requireProblem(t, bundle.serve(newCancelRequest("", testfactory.KeyValue(), itoa(ride.ID), "", "")), http.StatusUnauthorized, "auth-required")
		requireProblem(t, bundle.serve(newCancelRequest("nobody@example.com", testfactory.KeyValue(), itoa(ride.ID), "", "")), http.StatusUnauthorized, "auth-invalid")
		requireProblem(t, bundle.serve(newCancelRequest(bundle.user.Email, "", itoa(ride.ID), "", "")), http.StatusBadRequest, "invalid-idempotency-key")
		requireProblem(t, bundle.serve(newCancelRequest(bundle.user.Email, "short", itoa(ride.ID), "", "")), http.StatusBadRequest, "invalid-idempotency-key")
		require.Empty(t, bundle.fake.Refunds())
	})

	// Another user's ride gets the answer of a ride that does not exist,
	// stored.
	t.Run("NotFoundStored", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		other := newUser(t, bundle.exec, bundle.stripe, "tok_visa")
		ride := bundle.chargedRide(t, other)
		value := testfactory.KeyValue()

		first := bundle.cancel(bundle.user, value, ride)
		notFound := requireProblem(t, first, http.StatusNotFound, "ride-not-found")
		missing := requireProblem(t, bundle.cancel(bundle.user, testfactory.KeyValue(), &db.Ride{ID: ride.ID + 1000}),
			http.StatusNotFound, "ride-not-found")
		require.Equal(t, missing, notFound, "the answer does not tell which")

		requireReplay(t, first, bundle.cancel(bundle.user, value, ride))
		require.Equal(t, idempotency.RecoveryPointFinished, bundle.key(t, bundle.user, value).RecoveryPoint)
		require.Empty(t, bundle.fake.Refunds())
		requireProblem(t, bundle.getRide(bundle.user, itoa(ride.ID)), http.StatusNotFound, "ride-not-found")
	})

	t.Run("DeclinedNotRefundable", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		rideKey := testfactory.KeyValue()
		requireProblem(t, bundle.post(bundle.declined, rideKey, validForm()), http.StatusPaymentRequired, "card-declined")
		ride := bundle.ride(t, bundle.key(t, bundle.declined, rideKey))
		value := testfactory.KeyValue()

		first := bundle.cancel(bundle.declined, value, ride)
		requireProblem(t, first, http.StatusUnprocessableEntity, "ride-not-refundable")
		requireReplay(t, first, bundle.cancel(bundle.declined, value, ride))
		require.Empty(t, bundle.fake.Refunds())
		requireRideStatus(t, bundle, bundle.declined, ride, rides.StatusDeclined)
	})

	t.Run("AlreadyCancelledByAnotherKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		require.Equal(t, http.StatusOK, bundle.cancel(bundle.user, testfactory.KeyValue(), ride).Code)
		value := testfactory.KeyValue()

		first := bundle.cancel(bundle.user, value, ride)
		requireProblem(t, first, http.StatusConflict, "ride-already-cancelled")
		requireReplay(t, first, bundle.cancel(bundle.user, value, ride))
		require.Len(t, bundle.fake.Refunds(), 1)
	})

	t.Run("KeyReusedForOtherRideOrReason", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		other := bundle.chargedRide(t, bundle.user)
		value := testfactory.KeyValue()
		form := "application/x-www-form-urlencoded"
		require.Equal(t, http.StatusOK, bundle.serve(newCancelRequest(bundle.user.Email, value, itoa(ride.ID), form, "reason=late")).Code)

		for _, r := range []*http.Request{
			newCancelRequest(bundle.user.Email, value, itoa(other.ID), form, "reason=late"),
			newCancelRequest(bundle.user.Email, value, itoa(ride.ID), form, "reason=early"),
			newCancelRequest(bundle.user.Email, value, itoa(ride.ID), "", ""),
			newFormRequest(bundle.user.Email, value, validForm()), // POST /rides
		} {
			requireProblem(t, bundle.serve(r), http.StatusUnprocessableEntity, "idempotency-key-reused")
		}
		// And a ride's key is not a cancel's.
		rideKey := testfactory.KeyValue()
		requireCreated(t, bundle.post(bundle.user, rideKey, validForm()))
		requireProblem(t, bundle.cancel(bundle.user, rideKey, ride), http.StatusUnprocessableEntity, "idempotency-key-reused")
		require.Len(t, bundle.fake.Refunds(), 1)
	})

	// A ride whose creation has not finished: 409 with Retry-After, and no
	// key stored, so the retry gets the definitive answer once the ride is
	// charged.
	t.Run("PendingNotStored", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		rideKey := testfactory.IdempotencyKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated),
		})
		ride := testfactory.Ride(ctx, t, bundle.exec, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &rideKey.ID})
		value := testfactory.KeyValue()

		recorder := bundle.cancel(bundle.user, value, ride)
		requireProblem(t, recorder, http.StatusConflict, "ride-pending")
		require.Equal(t, "5", recorder.Header().Get("Retry-After"))
		bundle.requireNoKey(t, bundle.user, value)
		requireRideStatus(t, bundle, bundle.user, ride, rides.StatusPendingPayment)

		// The ride's client retries, and its request finishes.
		requireCreated(t, bundle.post(bundle.user, rideKey.IdempotencyKey, validForm()))
		ride = bundle.ride(t, rideKey)
		requireRideStatus(t, bundle, bundle.user, ride, rides.StatusCharged)
		bundle.requireCancelled(t, bundle.cancel(bundle.user, value, ride), bundle.user, value, ride)
	})

	t.Run("RefundIndeterminateResumes", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		value := testfactory.KeyValue()
		bundle.fake.SetFailureRates(0, 1) // Stripe refunds, and the answer is lost

		recorder := bundle.cancel(bundle.user, value, ride)
		requireProblem(t, recorder, http.StatusServiceUnavailable, "payment-unavailable")
		require.Equal(t, "5", recorder.Header().Get("Retry-After"))
		requireUnlockedAt(t, bundle.key(t, bundle.user, value), rides.RecoveryPointRideClaimed)
		require.Len(t, bundle.fake.Refunds(), 1)

		bundle.fake.SetFailureRates(0, 0)
		bundle.requireCancelled(t, bundle.cancel(bundle.user, value, ride), bundle.user, value, ride)
	})

	// Stripe refuses the refund for good (the charge was refunded
	// elsewhere): 503 stored, and the claim released, the ride still
	// charged.
	t.Run("RefundRefusedStored", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		_, err := bundle.stripe.RefundCreate(ctx, &stripeclient.RefundParams{Charge: *ride.StripeChargeID, IdempotencyKey: testfactory.KeyValue()})
		require.NoError(t, err)
		value := testfactory.KeyValue()

		first := bundle.cancel(bundle.user, value, ride)
		requireProblem(t, first, http.StatusServiceUnavailable, "payment-rejected")
		require.Empty(t, first.Header().Get("Retry-After"))
		requireReplay(t, first, bundle.cancel(bundle.user, value, ride))
		_, err = db.New().RideCancellationGetByRideID(ctx, bundle.exec, ride.ID)
		require.ErrorContains(t, err, "no rows", "the claim is released")
		requireRideStatus(t, bundle, bundle.user, ride, rides.StatusCharged)
	})

	// Past Stripe's idempotency window, a resumed cancel finds the refund
	// an earlier attempt made instead of refunding again.
	t.Run("PastWindowFindsEarlierRefund", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		value := testfactory.KeyValue()
		bundle.fake.SetFailureRates(0, 1)
		requireProblem(t, bundle.cancel(bundle.user, value, ride), http.StatusServiceUnavailable, "payment-unavailable")
		bundle.fake.SetFailureRates(0, 0)
		_, err := bundle.exec.Exec(ctx, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE id = $1",
			bundle.key(t, bundle.user, value).ID)
		require.NoError(t, err)
		requests := bundle.fake.RefundRequests()

		bundle.requireCancelled(t, bundle.cancel(bundle.user, value, ride), bundle.user, value, ride)
		require.Equal(t, requests, bundle.fake.RefundRequests(), "no refund was asked for again")
	})
}

func TestGetRide(t *testing.T) {
	t.Parallel()

	t.Run("Charged", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		value := testfactory.KeyValue()
		created := requireCreated(t, bundle.post(bundle.user, value, validForm()))

		recorder := bundle.getRide(bundle.user, itoa(created.Ride.ID))
		require.Equal(t, http.StatusOK, recorder.Code)
		var members map[string]any
		require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &members))
		require.ElementsMatch(t, []string{"id", "created_at", "origin_lat", "origin_lon", "target_lat", "target_lon",
			"status", "stripe_charge_id", "stripe_refund_id", "cancelled_at"}, mapKeys(members))
		require.Equal(t, rides.StatusCharged, members["status"])
		require.Equal(t, *created.Ride.StripeChargeID, members["stripe_charge_id"])
		require.Nil(t, members["stripe_refund_id"])
	})

	t.Run("AuthRequiredKeyIgnored", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, nil)
		ride := bundle.chargedRide(t, bundle.user)
		requireProblem(t, bundle.serve(httptest.NewRequest(http.MethodGet, "/rides/"+itoa(ride.ID), nil)), http.StatusUnauthorized, "auth-required")
		r := httptest.NewRequest(http.MethodGet, "/rides/"+itoa(ride.ID), nil)
		r.Header.Set("Authorization", bundle.user.Email)
		r.Header.Set("Idempotency-Key", "short")
		require.Equal(t, http.StatusOK, bundle.serve(r).Code, "a GET takes no key")
	})
}

// requireRideStatus requires GET /rides/{ride.ID} to show status.
func requireRideStatus(t *testing.T, bundle *testBundle, user *db.User, ride *db.Ride, status string) {
	t.Helper()
	recorder := bundle.getRide(user, itoa(ride.ID))
	require.Equal(t, http.StatusOK, recorder.Code, "body: %s", recorder.Body)
	var state rides.RideStateBody
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &state))
	require.Equal(t, status, state.Status)
}
