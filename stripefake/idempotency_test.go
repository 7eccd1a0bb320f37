package stripefake_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

func TestSameKeySameParamsReplaysCharge(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")

	first, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
	require.NoError(t, err)
	second, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
	require.NoError(t, err)

	require.Equal(t, first.ID, second.ID)
	require.JSONEq(t, string(first.LastResponse.RawJSON), string(second.LastResponse.RawJSON))
	require.Empty(t, first.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, "true", second.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.LastResponse.RequestID, second.LastResponse.Header.Get("Original-Request"))
	require.NotEqual(t, first.LastResponse.RequestID, second.LastResponse.RequestID)
	require.Len(t, fake.Charges(), 1)
	require.Equal(t, 2, fake.ChargeRequests())
}

func TestSameKeyOtherParamsIsRejected(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	_, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
	require.NoError(t, err)

	_, err = sc.Charges.New(chargeParams(customerID, 9999, "ride-5"))

	stripeErr := requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeIdempotency)
	require.Contains(t, stripeErr.Msg, "same parameters")
	var idempotencyErr *stripe.IdempotencyError
	require.ErrorAs(t, err, &idempotencyErr)
	require.Len(t, fake.Charges(), 1)
}

func TestSameKeyOnAnotherEndpointIsRejected(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	_, err := sc.Charges.New(chargeParams(customerID, 1250, "shared-key"))
	require.NoError(t, err)

	params := &stripe.CustomerParams{}
	params.SetIdempotencyKey("shared-key")
	_, err = sc.Customers.New(params)

	requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeIdempotency)
}

func TestRejectedRequestDoesNotUseUpItsKey(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	invalid := chargeParams(customerID, 1250, "ride-5")
	invalid.Currency = nil
	_, err := sc.Charges.New(invalid)
	requireStripeError(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)

	charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))

	require.NoError(t, err)
	require.Empty(t, charge.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Len(t, fake.Charges(), 1)
}

func TestCustomerCreationIsIdempotent(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	params := func() *stripe.CustomerParams {
		p := &stripe.CustomerParams{Email: stripe.String("rider@example.com")}
		p.SetIdempotencyKey("rider-7")
		return p
	}

	first, err := sc.Customers.New(params())
	require.NoError(t, err)
	second, err := sc.Customers.New(params())
	require.NoError(t, err)

	require.Equal(t, first.ID, second.ID)
}

func TestConcurrentRequestsWithTheSameKey(t *testing.T) {
	t.Parallel()
	// The latency keeps the first request in progress while the others
	// arrive, as a slow Stripe would.
	fake, sc := newFake(t, stripefake.Config{Latency: 200 * time.Millisecond})
	customerID := newCustomer(t, sc, "tok_visa")

	const requests = 10
	errs := make([]error, requests)
	chargeIDs := make([]string, requests)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			<-start
			charge, err := sc.Charges.New(chargeParams(customerID, 1250, "ride-5"))
			if err != nil {
				errs[i] = err
				return
			}
			chargeIDs[i] = charge.ID
		})
	}
	close(start)
	wg.Wait()

	charges := fake.Charges()
	require.Len(t, charges, 1)
	for i := range requests {
		if errs[i] != nil {
			stripeErr := requireStripeError(t, errs[i], http.StatusConflict, stripe.ErrorTypeIdempotency)
			require.Equal(t, stripe.ErrorCodeIdempotencyKeyInUse, stripeErr.Code)
			continue
		}
		require.Equal(t, charges[0].ID, chargeIDs[i])
	}
	require.Contains(t, chargeIDs, charges[0].ID)
	require.Equal(t, requests, fake.ChargeRequests())
}

func TestRequestsWithoutKeyAreNotDeduplicated(t *testing.T) {
	t.Parallel()
	fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	customerID := postForm(t, baseURL+"/v1/customers", "", nil).body["id"].(string)
	form := url.Values{"amount": {"1250"}, "currency": {"usd"}, "customer": {customerID}}

	first := postForm(t, baseURL+"/v1/charges", "", form)
	second := postForm(t, baseURL+"/v1/charges", "", form)

	require.Equal(t, http.StatusOK, first.status)
	require.Equal(t, http.StatusOK, second.status)
	require.NotEqual(t, first.body["id"], second.body["id"])
	require.Len(t, fake.Charges(), 2)
}

func TestStripeGoMakesUpAKeyForEachCall(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")

	first, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
	require.NoError(t, err)
	second, err := sc.Charges.New(chargeParams(customerID, 1250, ""))
	require.NoError(t, err)

	require.NotEqual(t, first.ID, second.ID)
	charges := fake.Charges()
	require.Len(t, charges, 2)
	require.NotEmpty(t, charges[0].IdempotencyKey)
	require.NotEqual(t, charges[0].IdempotencyKey, charges[1].IdempotencyKey)
}

func TestManyConcurrentCharges(t *testing.T) {
	t.Parallel()
	fake, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")

	const workers, perWorker = 8, 25
	errs := make(chan error, workers*(2*perWorker+1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				key := fmt.Sprintf("ride-%d-%d", w, i)
				// Each charge is sent twice, as a retrying client would.
				for range 2 {
					_, err := sc.Charges.New(chargeParams(customerID, 1250, key))
					errs <- err
				}
			}
		})
		wg.Go(func() {
			// Readers page through the list while charges are being made.
			iter := sc.Charges.List(&stripe.ChargeListParams{})
			for iter.Next() {
			}
			errs <- iter.Err()
		})
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		require.NoError(t, err)
	}
	listed, _ := listIDs(t, sc, &stripe.ChargeListParams{})
	require.Len(t, listed, workers*perWorker)
	require.Len(t, fake.Charges(), workers*perWorker)
	require.Equal(t, 2*workers*perWorker, fake.ChargeRequests())
}
