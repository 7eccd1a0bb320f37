package stripefake_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripefake"
)

func TestFailBefore(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{FailBeforeRate: 1})
	customerID := newCustomer(t, sc, "tok_visa")

	_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)
	require.Empty(t, fake.Charges(), "nothing is recorded")

	t.Run("a retry with the same key succeeds once Stripe recovers", func(t *testing.T) {
		fake.SetFailureRates(0, 0)

		charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

		require.NoError(t, err)
		require.Empty(t, charge.LastResponse.Header.Get("Idempotent-Replayed"))
		charges := fake.Charges()
		require.Len(t, charges, 1)
		require.Equal(t, charge.ID, charges[0].ID)
		require.Equal(t, 2, fake.ChargeRequests())
	})
}

func TestFailAfter(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{FailAfterRate: 1})
	customerID := newCustomer(t, sc, "tok_visa")

	_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)
	charges := fake.Charges()
	require.Len(t, charges, 1, "the charge was made; only its response was lost")

	t.Run("a retry with the same key replays the charge", func(t *testing.T) {
		// The failure rate is still 1: replays are not charge creations.
		charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

		require.NoError(t, err)
		require.Equal(t, charges[0].ID, charge.ID)
		require.Equal(t, "true", charge.LastResponse.Header.Get("Idempotent-Replayed"))
		require.Len(t, fake.Charges(), 1)
	})
}

func TestFailAfterRemembersDeclines(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{FailAfterRate: 1})
	customerID := newCustomer(t, sc, "tok_chargeCustomerFail")
	_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
	requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)

	_, err = sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	requireStripeError(t, err, http.StatusPaymentRequired, stripe.ErrorTypeCard)
}

// TestFailuresFollowTheSeed runs the same sequence of charge requests
// against two fakes with the same seed and one with another, and compares
// which requests failed.
func TestFailuresFollowTheSeed(t *testing.T) {
	t.Parallel()
	outcomes := func(seed int64) []int {
		_, sc := newFake(t, stripefake.Config{FailBeforeRate: 0.3, FailAfterRate: 0.3, Seed: seed})
		customerID := newCustomer(t, sc, "tok_visa")
		var statuses []int
		for range 30 {
			_, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
			if err != nil {
				statuses = append(statuses, requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI).HTTPStatusCode)
				continue
			}
			statuses = append(statuses, http.StatusOK)
		}
		return statuses
	}

	first := outcomes(42)

	require.Equal(t, first, outcomes(42))
	require.NotEqual(t, first, outcomes(43))
	require.Contains(t, first, http.StatusOK)
	require.Contains(t, first, http.StatusInternalServerError)
}

func TestFailureRatesAddUp(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{FailBeforeRate: 0.5, FailAfterRate: 0.5, Seed: 7})
	customerID := newCustomer(t, sc, "tok_visa")

	const requests = 40
	for range requests {
		_, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
		requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)
	}

	// Every request failed: some before recording their charge, the
	// others after.
	recorded := len(fake.Charges())
	require.Greater(t, recorded, 0)
	require.Less(t, recorded, requests)
}

func TestLatencyOutlivesAnImpatientClient(t *testing.T) {
	t.Parallel()
	const latency = 300 * time.Millisecond
	fake, sc := newFake(t, stripefake.Config{Latency: latency})
	customerID := newCustomer(t, sc, "tok_visa")

	ctx, cancel := context.WithTimeout(t.Context(), latency/3)
	defer cancel()
	params := chargeParams(customerID, 1250, "ride-5")
	params.Context = ctx
	_, err := sc.Charges.New(params)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// As on Stripe, the charge goes through although the client gave up,
	// and a retry with the same key gets it.
	require.Eventually(t, func() bool { return len(fake.Charges()) == 1 }, 5*time.Second, 10*time.Millisecond)
	charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
	require.NoError(t, err)
	require.Equal(t, fake.Charges()[0].ID, charge.ID)
}
