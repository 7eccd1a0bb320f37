package stripeclient_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
)

// refundParams are the parameters a cancellation sends, for charge.
func refundParams(charge, idempotencyKey string) *stripeclient.RefundParams {
	return &stripeclient.RefundParams{
		Charge:         charge,
		Reason:         "requested_by_customer",
		IdempotencyKey: idempotencyKey,
		Metadata: map[string]string{
			"idempotency_key":    idempotencyKey,
			"idempotency_key_id": "2",
			"ride_id":            "1",
		},
	}
}

// newCharge charges a new customer of the fake and returns the charge.
func newCharge(t *testing.T, client *stripeclient.Client, amount int64) *stripe.Charge {
	t.Helper()
	ctx := context.Background()
	customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)
	params := chargeParams(customer, "")
	params.Amount = amount
	charge, err := client.ChargeCreate(ctx, params)
	require.NoError(t, err)
	return charge
}

func TestRefundCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, client := newFakeClient(t, stripefake.Config{})
	charge := newCharge(t, client, 2000)

	refund, err := client.RefundCreate(ctx, refundParams(charge.ID, "cancel-key"))

	require.NoError(t, err)
	require.Equal(t, charge.ID, refund.Charge.ID)
	require.Equal(t, int64(2000), refund.Amount, "zero Amount refunds the whole charge")
	require.Equal(t, stripe.RefundReasonRequestedByCustomer, refund.Reason)
	require.Equal(t, "cancel-key", refund.Metadata["idempotency_key"])
	recorded := fake.Refunds()
	require.Len(t, recorded, 1)
	require.Equal(t, "cancel-key", recorded[0].IdempotencyKey)
	require.Equal(t, refundParams(charge.ID, "cancel-key").Metadata, recorded[0].Metadata)

	t.Run("the same key replays the refund", func(t *testing.T) {
		again, err := client.RefundCreate(ctx, refundParams(charge.ID, "cancel-key"))
		require.NoError(t, err)
		require.Equal(t, refund.ID, again.ID)
		require.Len(t, fake.Refunds(), 1)
	})

	t.Run("another key is refused for good", func(t *testing.T) {
		_, err := client.RefundCreate(ctx, refundParams(charge.ID, "other-key"))
		require.ErrorContains(t, err, "creating Stripe refund of charge "+charge.ID)
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeRejected, outcome)
		var stripeErr *stripe.Error
		require.ErrorAs(t, err, &stripeErr)
		require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
	})
}

func TestRefundCreatePartial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, client := newFakeClient(t, stripefake.Config{})
	charge := newCharge(t, client, 2000)
	params := refundParams(charge.ID, "partial-key")
	params.Amount = 500
	params.Reason = ""

	refund, err := client.RefundCreate(ctx, params)

	require.NoError(t, err)
	require.Equal(t, int64(500), refund.Amount)
	require.Empty(t, refund.Reason)
}

// TestRefundFind checks that the search pages through all of a charge's
// refunds and looks only at that charge's.
func TestRefundFind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, client := newFakeClient(t, stripefake.Config{})
	charge := newCharge(t, client, 10_000)
	other := newCharge(t, client, 10_000)

	// The oldest refund is on the last of several pages, newest first.
	const numRefunds = 205
	for i := range numRefunds {
		params := refundParams(charge.ID, "key-"+strconv.Itoa(i))
		params.Amount = 10
		_, err := client.RefundCreate(ctx, params)
		require.NoError(t, err)
	}
	_, err := client.RefundCreate(ctx, refundParams(other.ID, "key-other"))
	require.NoError(t, err)
	require.Len(t, fake.Refunds(), numRefunds+1)

	found, err := client.RefundFind(ctx, charge.ID, "idempotency_key", "key-0")
	require.NoError(t, err)
	require.NotNil(t, found)
	require.Equal(t, fake.Refunds()[0].ID, found.ID)

	found, err = client.RefundFind(ctx, charge.ID, "idempotency_key", "key-other")
	require.NoError(t, err)
	require.Nil(t, found, "another charge's refund")
}

func TestRefundList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, client := newFakeClient(t, stripefake.Config{})
	for i := range 3 {
		_, err := client.RefundCreate(ctx, refundParams(newCharge(t, client, 2000).ID, "key-"+strconv.Itoa(i)))
		require.NoError(t, err)
	}

	var listed []string
	err := client.RefundList(ctx, "", func(refund *stripe.Refund) bool {
		listed = append(listed, refund.ID)
		return true
	})

	require.NoError(t, err)
	recorded := fake.Refunds()
	require.Equal(t, []string{recorded[2].ID, recorded[1].ID, recorded[0].ID}, listed, "every charge's, newest first")

	t.Run("stops when fn returns false", func(t *testing.T) {
		calls := 0
		err := client.RefundList(ctx, "", func(*stripe.Refund) bool {
			calls++
			return false
		})
		require.NoError(t, err)
		require.Equal(t, 1, calls)
	})

	t.Run("reports Stripe's errors", func(t *testing.T) {
		err := client.RefundList(ctx, "ch_missing", func(*stripe.Refund) bool { return true })
		require.NoError(t, err, "a filter on an unknown charge lists nothing")

		unreachable, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: "http://127.0.0.1:1", APIKey: "sk_test_1"})
		require.NoError(t, err)
		err = unreachable.RefundList(ctx, "", func(*stripe.Refund) bool { return true })
		require.ErrorContains(t, err, "listing Stripe refunds")
	})
}

// TestClassifyRefundErrors classifies what stripe-go makes of the fake's
// answers to refunds.
func TestClassifyRefundErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("DeclinedCharge", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{})
		customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_chargeCustomerFail")
		require.NoError(t, err)
		_, err = client.ChargeCreate(ctx, chargeParams(customer, "key-declined"))
		var declined *stripe.Error
		require.ErrorAs(t, err, &declined)

		_, err = client.RefundCreate(ctx, refundParams(declined.ChargeID, "refund-declined"))
		outcome, message := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeRejected, outcome)
		require.Empty(t, message)
	})

	t.Run("UnknownCharge", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{})
		_, err := client.RefundCreate(ctx, refundParams("ch_missing", "refund-unknown"))
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeRejected, outcome)
	})

	t.Run("AmountTooLarge", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{})
		params := refundParams(newCharge(t, client, 2000).ID, "refund-too-large")
		params.Amount = 2001
		_, err := client.RefundCreate(ctx, params)
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeRejected, outcome)
	})

	t.Run("ServerError", func(t *testing.T) {
		t.Parallel()
		fake, client := newFakeClient(t, stripefake.Config{})
		charge := newCharge(t, client, 2000)
		fake.SetFailureRates(0, 1)
		_, err := client.RefundCreate(ctx, refundParams(charge.ID, "refund-server-error"))
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome)
		require.Len(t, fake.Refunds(), 1, "indeterminate: the refund was in fact made")
	})

	t.Run("KeyInUse", func(t *testing.T) {
		t.Parallel()
		fake, client := newFakeClient(t, stripefake.Config{Latency: 300 * time.Millisecond})
		charge := newCharge(t, client, 2000)
		impatient, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := client.RefundCreate(impatient, refundParams(charge.ID, "refund-in-use"))
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome, "timeout")

		_, err = client.RefundCreate(ctx, refundParams(charge.ID, "refund-in-use"))
		var stripeErr *stripe.Error
		require.ErrorAs(t, err, &stripeErr)
		require.Equal(t, http.StatusConflict, stripeErr.HTTPStatusCode)
		outcome, _ = stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome, "409 idempotency_key_in_use")
		require.Eventually(t, func() bool { return len(fake.Refunds()) == 1 }, 5*time.Second, 10*time.Millisecond)
	})
}
