package stripefake_test

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripefake"
)

func TestCreateCustomer(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	params := &stripe.CustomerParams{
		Email:       stripe.String("rider@example.com"),
		Description: stripe.String("Rider 7"),
		Source:      stripe.String("tok_visa"),
	}
	params.AddMetadata("rider_id", "7")
	customer, err := sc.Customers.New(params)

	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^cus_[0-9A-Za-z]{14}$`), customer.ID)
	require.Equal(t, "customer", customer.Object)
	require.Equal(t, "rider@example.com", customer.Email)
	require.Equal(t, "Rider 7", customer.Description)
	require.Equal(t, map[string]string{"rider_id": "7"}, customer.Metadata)
	require.NotNil(t, customer.DefaultSource)
	require.Regexp(t, `^card_`, customer.DefaultSource.ID)
	require.False(t, customer.Livemode)
	require.NotZero(t, customer.Created)
	require.NotEmpty(t, customer.LastResponse.RequestID)
}

func TestCreateCustomerWithoutSource(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	customer, err := sc.Customers.New(&stripe.CustomerParams{})

	require.NoError(t, err)
	require.Nil(t, customer.DefaultSource)
	require.Empty(t, customer.Email)
}

func TestCreateCustomerWithUnknownToken(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	_, err := sc.Customers.New(&stripe.CustomerParams{Source: stripe.String("tok_nope")})

	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	require.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr.Code)
	require.Equal(t, "source", stripeErr.Param)
	require.Contains(t, stripeErr.Msg, "tok_nope")
}

func TestGetCustomer(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	created, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("rider@example.com")})
	require.NoError(t, err)

	got, err := sc.Customers.Get(created.ID, nil)
	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, "rider@example.com", got.Email)

	_, err = sc.Customers.Get("cus_missing", nil)
	var stripeErr *stripe.Error
	require.ErrorAs(t, err, &stripeErr)
	require.Equal(t, http.StatusNotFound, stripeErr.HTTPStatusCode)
	require.Equal(t, stripe.ErrorTypeInvalidRequest, stripeErr.Type)
}
