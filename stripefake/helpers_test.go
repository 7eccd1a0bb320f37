package stripefake_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// newFake starts a fake configured by config and returns it with a
// stripe-go client of it.
func newFake(t *testing.T, config stripefake.Config) (*stripefake.Server, *client.API) {
	t.Helper()
	fake, baseURL := stripefaketest.NewServer(t, config)
	return fake, stripefaketest.NewClient(baseURL)
}

// newCustomer creates a customer with the card token source ("" for none)
// and returns its id.
func newCustomer(t *testing.T, sc *client.API, source string) string {
	t.Helper()
	params := &stripe.CustomerParams{Email: stripe.String("rider@example.com")}
	if source != "" {
		params.Source = stripe.String(source)
	}
	customer, err := sc.Customers.New(params)
	require.NoError(t, err)
	return customer.ID
}

// chargeParams asks to charge customerID amount cents for a ride, with
// the given idempotency key ("" to let stripe-go make one up).
func chargeParams(customerID string, amount int64, idempotencyKey string) *stripe.ChargeParams {
	params := &stripe.ChargeParams{
		Amount:      stripe.Int64(amount),
		Currency:    stripe.String(string(stripe.CurrencyUSD)),
		Customer:    stripe.String(customerID),
		Description: stripe.String("Ride 5"),
	}
	params.AddMetadata("ride_id", "5")
	if idempotencyKey != "" {
		params.SetIdempotencyKey(idempotencyKey)
	}
	return params
}

// requireStripeError requires err to be a *stripe.Error with the given
// HTTP status and type, and returns it.
func requireStripeError(t *testing.T, err error, status int, errorType stripe.ErrorType) *stripe.Error {
	t.Helper()
	var stripeErr *stripe.Error
	require.True(t, errors.As(err, &stripeErr), "want a *stripe.Error, got %T: %v", err, err)
	require.Equal(t, status, stripeErr.HTTPStatusCode, "status of %v", err)
	require.Equal(t, errorType, stripeErr.Type, "type of %v", err)
	return stripeErr
}
