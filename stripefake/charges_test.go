package stripefake_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripefake"
)

func TestChargeSucceeds(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	before := time.Now().Unix()

	charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^ch_[0-9A-Za-z]{24}$`), charge.ID)
	require.Equal(t, "charge", charge.Object)
	require.Equal(t, int64(1250), charge.Amount)
	require.Equal(t, int64(1250), charge.AmountCaptured)
	require.Equal(t, stripe.CurrencyUSD, charge.Currency)
	require.Equal(t, customerID, charge.Customer.ID)
	require.Equal(t, "Ride 5", charge.Description)
	require.Equal(t, map[string]string{"ride_id": "5"}, charge.Metadata)
	require.Equal(t, stripe.ChargeStatusSucceeded, charge.Status)
	require.True(t, charge.Paid)
	require.True(t, charge.Captured)
	require.False(t, charge.Livemode)
	require.GreaterOrEqual(t, charge.Created, before)
	require.Equal(t, "ride-5", charge.LastResponse.IdempotencyKey)

	recorded := fake.Charges()
	require.Len(t, recorded, 1)
	require.Equal(t, stripefake.Charge{
		ID:             charge.ID,
		Amount:         1250,
		Currency:       "usd",
		Customer:       customerID,
		Description:    "Ride 5",
		Metadata:       map[string]string{"ride_id": "5"},
		Status:         stripefake.ChargeSucceeded,
		IdempotencyKey: "ride-5",
		Created:        recorded[0].Created,
	}, recorded[0])
	require.Equal(t, charge.Created, recorded[0].Created.Unix())
	require.Equal(t, 1, fake.ChargeRequests())
}

func TestChargeCustomerWithoutCard(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "")

	charge, err := sc.Charges.New(chargeParams(customerID, 500, ""))

	require.NoError(t, err)
	require.Equal(t, stripe.ChargeStatusSucceeded, charge.Status)
}

func TestChargeDeclined(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_chargeCustomerFail")

	_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	declined := requireStripeError(t, err, http.StatusPaymentRequired, stripe.ErrorTypeCard)
	require.Equal(t, stripe.ErrorCodeCardDeclined, declined.Code)
	require.Equal(t, stripe.DeclineCodeGenericDecline, declined.DeclineCode)
	require.Equal(t, "Your card was declined.", declined.Msg)
	require.Regexp(t, `^ch_`, declined.ChargeID)
	var cardErr *stripe.CardError
	require.ErrorAs(t, err, &cardErr)
	require.Equal(t, stripe.DeclineCodeGenericDecline, cardErr.DeclineCode)

	t.Run("retry with the same key replays the decline", func(t *testing.T) {
		_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

		replayed := requireStripeError(t, err, http.StatusPaymentRequired, stripe.ErrorTypeCard)
		require.Equal(t, declined.ChargeID, replayed.ChargeID)
		require.Equal(t, "true", replayed.LastResponse.Header.Get("Idempotent-Replayed"))
	})

	t.Run("the declined charge is recorded as failed", func(t *testing.T) {
		charges := fake.Charges()
		require.Len(t, charges, 1)
		require.Equal(t, declined.ChargeID, charges[0].ID)
		require.Equal(t, stripefake.ChargeFailed, charges[0].Status)

		charge, err := sc.Charges.Get(declined.ChargeID, nil)
		require.NoError(t, err)
		require.Equal(t, stripe.ChargeStatusFailed, charge.Status)
		require.False(t, charge.Paid)
		require.Equal(t, "card_declined", charge.FailureCode)
	})
}

func TestChargeRejectsInvalidRequests(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")

	tests := []struct {
		name      string
		change    func(*stripe.ChargeParams)
		wantCode  stripe.ErrorCode
		wantParam string
	}{
		{"missing amount", func(p *stripe.ChargeParams) { p.Amount = nil }, stripe.ErrorCodeParameterMissing, "amount"},
		{"zero amount", func(p *stripe.ChargeParams) { p.Amount = stripe.Int64(0) }, stripe.ErrorCodeParameterInvalidInteger, "amount"},
		{"negative amount", func(p *stripe.ChargeParams) { p.Amount = stripe.Int64(-5) }, stripe.ErrorCodeParameterInvalidInteger, "amount"},
		{"missing currency", func(p *stripe.ChargeParams) { p.Currency = nil }, stripe.ErrorCodeParameterMissing, "currency"},
		{"bad currency", func(p *stripe.ChargeParams) { p.Currency = stripe.String("dollars") }, "", "currency"},
		{"missing customer", func(p *stripe.ChargeParams) { p.Customer = nil }, stripe.ErrorCodeParameterMissing, "customer"},
		{"unknown customer", func(p *stripe.ChargeParams) { p.Customer = stripe.String("cus_nobody") }, stripe.ErrorCodeResourceMissing, "customer"},
		{"unsupported parameter", func(p *stripe.ChargeParams) { p.Capture = stripe.Bool(false) }, stripe.ErrorCodeParameterUnknown, "capture"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params := chargeParams(customerID, 1250, "")
			tt.change(params)

			_, err := sc.Charges.New(params)

			stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
			require.Equal(t, tt.wantCode, stripeErr.Code)
			require.Equal(t, tt.wantParam, stripeErr.Param)
		})
	}
}

func TestGetCharge(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	created, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
	require.NoError(t, err)

	got, err := sc.Charges.Get(created.ID, nil)

	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, created.Amount, got.Amount)
	require.Equal(t, created.Metadata, got.Metadata)
	require.Equal(t, created.Created, got.Created)
	require.Equal(t, customerID, got.Customer.ID)
}

func TestGetUnknownCharge(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	_, err := sc.Charges.Get("ch_nothing", nil)

	stripeErr := requireStripeError(t, err, http.StatusNotFound, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr.Code)
	require.Contains(t, stripeErr.Msg, "ch_nothing")
}
