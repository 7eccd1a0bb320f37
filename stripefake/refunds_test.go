package stripefake_test

import (
	"context"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/rocketrides/rocketrides/stripefake"
)

// newCharge charges a new customer amount cents and returns the charge's id.
func newCharge(t *testing.T, sc *client.API, amount int64) string {
	t.Helper()
	charge, err := sc.Charges.New(chargeParams(newCustomer(t, sc, "tok_visa"), amount, ""))
	require.NoError(t, err)
	return charge.ID
}

// refundParams asks to refund chargeID, by amount cents (0 for all that
// remains), with the given idempotency key ("" to let stripe-go make one up).
func refundParams(chargeID string, amount int64, idempotencyKey string) *stripe.RefundParams {
	params := &stripe.RefundParams{Charge: stripe.String(chargeID)}
	if amount != 0 {
		params.Amount = stripe.Int64(amount)
	}
	params.AddMetadata("ride_id", "5")
	if idempotencyKey != "" {
		params.SetIdempotencyKey(idempotencyKey)
	}
	return params
}

// getChargeWithRefunds gets the charge chargeID with its refunds expanded.
func getChargeWithRefunds(t *testing.T, sc *client.API, chargeID string) *stripe.Charge {
	t.Helper()
	params := &stripe.ChargeParams{}
	params.AddExpand("refunds")
	charge, err := sc.Charges.Get(chargeID, params)
	require.NoError(t, err)
	return charge
}

func TestRefundSucceeds(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	before := time.Now().Unix()
	params := refundParams(chargeID, 0, "cancel-5")
	params.Reason = stripe.String(string(stripe.RefundReasonRequestedByCustomer))

	refund, err := sc.Refunds.New(params)

	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^re_[0-9A-Za-z]{24}$`), refund.ID)
	require.Equal(t, "refund", refund.Object)
	require.Equal(t, int64(1250), refund.Amount, "all of the charge by default")
	require.Equal(t, chargeID, refund.Charge.ID)
	require.Equal(t, stripe.CurrencyUSD, refund.Currency)
	require.Equal(t, map[string]string{"ride_id": "5"}, refund.Metadata)
	require.Equal(t, stripe.RefundReasonRequestedByCustomer, refund.Reason)
	require.Equal(t, stripe.RefundStatusSucceeded, refund.Status)
	require.GreaterOrEqual(t, refund.Created, before)
	require.Equal(t, "cancel-5", refund.LastResponse.IdempotencyKey)

	recorded := fake.Refunds()
	require.Equal(t, []stripefake.Refund{{
		ID:             refund.ID,
		Charge:         chargeID,
		Amount:         1250,
		Currency:       "usd",
		Reason:         "requested_by_customer",
		Metadata:       map[string]string{"ride_id": "5"},
		Status:         stripefake.RefundSucceeded,
		IdempotencyKey: "cancel-5",
		Created:        recorded[0].Created,
	}}, recorded)
	require.Equal(t, 1, fake.RefundRequests())

	t.Run("the charge is refunded", func(t *testing.T) {
		charge, err := sc.Charges.Get(chargeID, nil)
		require.NoError(t, err)
		require.Equal(t, int64(1250), charge.AmountRefunded)
		require.True(t, charge.Refunded)
		require.Nil(t, charge.Refunds, "refunds are not included unless expanded")
		require.Equal(t, int64(1250), fake.Charges()[0].AmountRefunded)

		charge = getChargeWithRefunds(t, sc, chargeID)
		require.NotNil(t, charge.Refunds)
		require.Len(t, charge.Refunds.Data, 1)
		require.Equal(t, refund.ID, charge.Refunds.Data[0].ID)
		require.Equal(t, int64(1250), charge.Refunds.Data[0].Amount)
		require.False(t, charge.Refunds.HasMore)
		require.Equal(t, "/v1/charges/"+chargeID+"/refunds", charge.Refunds.URL)
	})
}

func TestRefundReplay(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	first, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))
	require.NoError(t, err)

	again, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))

	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.LastResponse.RequestID, again.LastResponse.Header.Get("Original-Request"))
	require.Len(t, fake.Refunds(), 1)
	require.Equal(t, 2, fake.RefundRequests())
}

func TestRefundKeyReusedWithOtherParams(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	_, err := sc.Refunds.New(refundParams(chargeID, 500, "cancel-5"))
	require.NoError(t, err)

	_, err = sc.Refunds.New(refundParams(chargeID, 700, "cancel-5"))

	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeIdempotency)
	require.Contains(t, stripeErr.Msg, "cancel-5")
	require.Len(t, fake.Refunds(), 1)

	t.Run("a charge's key cannot refund", func(t *testing.T) {
		customerID := newCustomer(t, sc, "tok_visa")
		_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
		require.NoError(t, err)

		_, err = sc.Refunds.New(refundParams(chargeID, 0, "ride-5"))

		requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeIdempotency)
		require.Len(t, fake.Refunds(), 1)
	})
}

func TestSecondFullRefundIsRefused(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	_, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))
	require.NoError(t, err)

	_, err = sc.Refunds.New(refundParams(chargeID, 0, "cancel-5-again"))

	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
	require.Equal(t, "Charge "+chargeID+" has already been refunded.", stripeErr.Msg)
	require.Len(t, fake.Refunds(), 1)

	t.Run("the refusal is not kept under the key", func(t *testing.T) {
		_, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5-again"))

		stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
		require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
		require.Empty(t, stripeErr.LastResponse.Header.Get("Idempotent-Replayed"))
	})
}

func TestPartialRefundThenRemainder(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)

	partial, err := sc.Refunds.New(refundParams(chargeID, 500, ""))
	require.NoError(t, err)
	require.Equal(t, int64(500), partial.Amount)
	charge, err := sc.Charges.Get(chargeID, nil)
	require.NoError(t, err)
	require.Equal(t, int64(500), charge.AmountRefunded)
	require.False(t, charge.Refunded)

	_, err = sc.Refunds.New(refundParams(chargeID, 751, ""))
	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeAmountTooLarge, stripeErr.Code)
	require.Equal(t, "amount", stripeErr.Param)
	require.Equal(t, "Refund amount ($7.51) is greater than unrefunded amount on charge ($7.50)", stripeErr.Msg)

	remainder, err := sc.Refunds.New(refundParams(chargeID, 0, ""))
	require.NoError(t, err)
	require.Equal(t, int64(750), remainder.Amount, "what remains")

	charge = getChargeWithRefunds(t, sc, chargeID)
	require.Equal(t, int64(1250), charge.AmountRefunded)
	require.True(t, charge.Refunded)
	require.Len(t, charge.Refunds.Data, 2)
	require.Equal(t, remainder.ID, charge.Refunds.Data[0].ID, "newest first")
	require.Equal(t, partial.ID, charge.Refunds.Data[1].ID)

	_, err = sc.Refunds.New(refundParams(chargeID, 1, ""))
	stripeErr = requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
	require.Len(t, fake.Refunds(), 2)
}

func TestRefundOfDeclinedChargeIsRefused(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_chargeCustomerFail")
	_, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
	declined := requireStripeError(t, err, http.StatusPaymentRequired, stripe.ErrorTypeCard)

	_, err = sc.Refunds.New(refundParams(declined.ChargeID, 0, "cancel-5"))

	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeChargeNotRefundable, stripeErr.Code)
	require.Contains(t, stripeErr.Msg, declined.ChargeID)
	require.Empty(t, fake.Refunds())
	charge, err := sc.Charges.Get(declined.ChargeID, nil)
	require.NoError(t, err)
	require.False(t, charge.Refunded)
	require.Zero(t, charge.AmountRefunded)
}

func TestRefundRejectsInvalidRequests(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)

	tests := []struct {
		name      string
		change    func(*stripe.RefundParams)
		wantCode  stripe.ErrorCode
		wantParam string
	}{
		{"missing charge", func(p *stripe.RefundParams) { p.Charge = nil }, stripe.ErrorCodeParameterMissing, "charge"},
		{"unknown charge", func(p *stripe.RefundParams) { p.Charge = stripe.String("ch_nothing") }, stripe.ErrorCodeResourceMissing, "charge"},
		{"zero amount", func(p *stripe.RefundParams) { p.Amount = stripe.Int64(0) }, stripe.ErrorCodeParameterInvalidInteger, "amount"},
		{"negative amount", func(p *stripe.RefundParams) { p.Amount = stripe.Int64(-5) }, stripe.ErrorCodeParameterInvalidInteger, "amount"},
		{"bad reason", func(p *stripe.RefundParams) { p.Reason = stripe.String("changed_mind") }, "", "reason"},
		{"unsupported parameter", func(p *stripe.RefundParams) { p.RefundApplicationFee = stripe.Bool(true) }, stripe.ErrorCodeParameterUnknown, "refund_application_fee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params := refundParams(chargeID, 0, "")
			tt.change(params)

			_, err := sc.Refunds.New(params)

			stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
			require.Equal(t, tt.wantCode, stripeErr.Code)
			require.Equal(t, tt.wantParam, stripeErr.Param)
		})
	}
}

func TestGetRefund(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	created, err := sc.Refunds.New(refundParams(newCharge(t, sc, 1250), 300, ""))
	require.NoError(t, err)

	got, err := sc.Refunds.Get(created.ID, nil)

	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, int64(300), got.Amount)
	require.Equal(t, created.Charge.ID, got.Charge.ID)
	require.Equal(t, created.Metadata, got.Metadata)
	require.Equal(t, created.Created, got.Created)
	require.Empty(t, got.Reason)

	_, err = sc.Refunds.Get("re_nothing", nil)
	stripeErr := requireStripeError(t, err, http.StatusNotFound, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr.Code)
	require.Contains(t, stripeErr.Msg, "re_nothing")
}

func TestGetChargeRejectsOtherExpansions(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	params := &stripe.ChargeParams{}
	params.AddExpand("customer")

	_, err := sc.Charges.Get(newCharge(t, sc, 1250), params)

	requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
}

// listRefundIDs lists refunds with params through stripe-go's iterator
// and returns their ids and how many pages it fetched.
func listRefundIDs(t *testing.T, sc *client.API, params *stripe.RefundListParams) ([]string, int) {
	t.Helper()
	var ids []string
	pages := make(map[*stripe.RefundList]bool)
	iter := sc.Refunds.List(params)
	for iter.Next() {
		ids = append(ids, iter.Refund().ID)
		pages[iter.RefundList()] = true
	}
	require.NoError(t, iter.Err())
	return ids, len(pages)
}

func TestListRefunds(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	first, second := newCharge(t, sc, 10_000), newCharge(t, sc, 10_000)
	var all, ofFirst []string
	for i := range 12 {
		chargeID := first
		if i%3 == 2 {
			chargeID = second
		}
		refund, err := sc.Refunds.New(refundParams(chargeID, 100, ""))
		require.NoError(t, err)
		all = append(all, refund.ID)
		if chargeID == first {
			ofFirst = append(ofFirst, refund.ID)
		}
	}

	t.Run("all, page by page", func(t *testing.T) {
		params := &stripe.RefundListParams{}
		params.Limit = stripe.Int64(5)
		listed, pages := listRefundIDs(t, sc, params)
		require.Equal(t, newestFirst(all), listed)
		require.Equal(t, 3, pages)
	})

	t.Run("of one charge", func(t *testing.T) {
		params := &stripe.RefundListParams{Charge: stripe.String(first)}
		params.Limit = stripe.Int64(3)
		listed, pages := listRefundIDs(t, sc, params)
		require.Equal(t, newestFirst(ofFirst), listed)
		require.Equal(t, 3, pages)
	})

	t.Run("starting after", func(t *testing.T) {
		newest := newestFirst(all)
		params := &stripe.RefundListParams{}
		params.StartingAfter = stripe.String(newest[9])
		listed, _ := listRefundIDs(t, sc, params)
		require.Equal(t, newest[10:], listed)
	})

	t.Run("ending before", func(t *testing.T) {
		newest := newestFirst(all)
		params := &stripe.RefundListParams{}
		params.EndingBefore = stripe.String(newest[3])
		params.Limit = stripe.Int64(2)
		listed, pages := listRefundIDs(t, sc, params)
		require.Equal(t, []string{newest[2], newest[1], newest[0]}, listed)
		require.Equal(t, 2, pages)
	})

	t.Run("one page", func(t *testing.T) {
		params := &stripe.RefundListParams{}
		params.Single = true
		iter := sc.Refunds.List(params)
		var listed []string
		for iter.Next() {
			listed = append(listed, iter.Refund().ID)
		}
		require.NoError(t, iter.Err())
		require.Equal(t, newestFirst(all)[:10], listed, "the default limit is 10")
		require.True(t, iter.RefundList().HasMore)
		require.Equal(t, "/v1/refunds", iter.RefundList().URL)
	})

	t.Run("an expanded charge carries its newest ten", func(t *testing.T) {
		charge := getChargeWithRefunds(t, sc, first)
		require.Len(t, charge.Refunds.Data, 8)
		require.False(t, charge.Refunds.HasMore)
		require.Equal(t, newestFirst(ofFirst)[0], charge.Refunds.Data[0].ID)
	})

	t.Run("unknown cursor", func(t *testing.T) {
		params := &stripe.RefundListParams{}
		params.StartingAfter = stripe.String("re_nothing")
		iter := sc.Refunds.List(params)
		require.False(t, iter.Next())
		stripeErr := requireStripeError(t, iter.Err(), http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
		require.Equal(t, "starting_after", stripeErr.Param)
		require.Contains(t, stripeErr.Msg, "No such refund")
	})
}

func TestRefundFailBefore(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	fake.SetFailureRates(1, 0)

	_, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))

	requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)
	require.Empty(t, fake.Refunds(), "nothing is recorded")
	require.Zero(t, fake.Charges()[0].AmountRefunded)

	fake.SetFailureRates(0, 0)
	refund, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))
	require.NoError(t, err)
	require.Empty(t, refund.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Len(t, fake.Refunds(), 1)
}

func TestRefundFailAfter(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)
	fake.SetFailureRates(0, 1)

	_, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))

	requireStripeError(t, err, http.StatusInternalServerError, stripe.ErrorTypeAPI)
	refunds := fake.Refunds()
	require.Len(t, refunds, 1, "the refund was made; only its response was lost")

	t.Run("a retry with the same key replays the refund", func(t *testing.T) {
		refund, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))

		require.NoError(t, err)
		require.Equal(t, refunds[0].ID, refund.ID)
		require.Equal(t, "true", refund.LastResponse.Header.Get("Idempotent-Replayed"))
	})

	t.Run("a retry with another key is refused", func(t *testing.T) {
		_, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5-new-key"))

		stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
		require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
		require.Len(t, fake.Refunds(), 1)
	})
}

func TestRefundKeyInUse(t *testing.T) {
	t.Parallel()
	const latency = 300 * time.Millisecond
	fake, sc := newFake(t, stripefake.Config{Latency: latency})
	chargeID := newCharge(t, sc, 1250)

	ctx, cancel := context.WithTimeout(t.Context(), latency/3)
	defer cancel()
	params := refundParams(chargeID, 0, "cancel-5")
	params.Context = ctx
	_, err := sc.Refunds.New(params)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The first request still holds the key.
	_, err = sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))
	stripeErr := requireStripeError(t, err, http.StatusConflict, stripe.ErrorTypeIdempotency)
	require.Equal(t, stripe.ErrorCodeIdempotencyKeyInUse, stripeErr.Code)

	// As on Stripe, the refund goes through although the client gave up,
	// and a retry with the same key gets it.
	require.Eventually(t, func() bool { return len(fake.Refunds()) == 1 }, 5*time.Second, 10*time.Millisecond)
	refund, err := sc.Refunds.New(refundParams(chargeID, 0, "cancel-5"))
	require.NoError(t, err)
	require.Equal(t, fake.Refunds()[0].ID, refund.ID)
}

// TestConcurrentFullRefunds refunds one charge in full from many requests
// with distinct keys at once: exactly one refunds it.
func TestConcurrentFullRefunds(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	chargeID := newCharge(t, sc, 1250)

	const requests = 20
	var wg sync.WaitGroup
	errs := make([]error, requests)
	for i := range requests {
		wg.Go(func() {
			_, errs[i] = sc.Refunds.New(refundParams(chargeID, 0, ""))
		})
	}
	wg.Wait()

	succeeded := 0
	for _, err := range errs {
		if err == nil {
			succeeded++
			continue
		}
		stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
		require.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr.Code)
	}
	require.Equal(t, 1, succeeded)
	require.Len(t, fake.Refunds(), 1)
	require.Equal(t, int64(1250), fake.Charges()[0].AmountRefunded)
}
