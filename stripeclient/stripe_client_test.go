package stripeclient_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// chargeParams are the parameters rides sends, for customer.
func chargeParams(customer, idempotencyKey string) *stripeclient.ChargeParams {
	return &stripeclient.ChargeParams{
		Amount:         2000,
		Currency:       "usd",
		Customer:       customer,
		Description:    "Charge for ride 1",
		IdempotencyKey: idempotencyKey,
		Metadata: map[string]string{
			"idempotency_key":    idempotencyKey,
			"idempotency_key_id": "1",
			"ride_id":            "1",
		},
	}
}

func newFakeClient(t *testing.T, config stripefake.Config) (*stripefake.Server, *stripeclient.Client) {
	t.Helper()
	fake, baseURL := stripefaketest.NewServer(t, config)
	return fake, newClient(t, &stripeclient.ClientConfig{APIBase: baseURL, APIKey: stripefaketest.APIKey})
}

// newClient returns a client, failing the test if config is rejected.
func newClient(t *testing.T, config *stripeclient.ClientConfig) *stripeclient.Client {
	t.Helper()
	client, err := stripeclient.NewClient(config)
	require.NoError(t, err)
	return client
}

func TestNewClient(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		config *stripeclient.ClientConfig
		want   string
	}{
		{nil, "stripe client: APIKey is required"},
		{&stripeclient.ClientConfig{APIKey: "sk_test_1", APIBase: "127.0.0.1:12111"}, "APIBase must be an http or https URL"},
		{&stripeclient.ClientConfig{APIKey: "sk_test_1", Timeout: -time.Second}, "Timeout must not be negative"},
	} {
		_, err := stripeclient.NewClient(tt.config)
		require.ErrorContains(t, err, tt.want)
	}
}

// TestStripeMock checks that Stripe's official mock, which validates
// requests against Stripe's OpenAPI specification, accepts our calls.
func TestStripeMock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newClient(t, &stripeclient.ClientConfig{APIBase: startStripeMock(t), APIKey: "sk_test_123"})

	customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)
	require.NotEmpty(t, customer)

	charge, err := client.ChargeCreate(ctx, chargeParams(customer, "rocket-rides-stripe-mock"))
	require.NoError(t, err)
	require.NotEmpty(t, charge.ID)

	_, err = client.ChargeFind(ctx, customer, "idempotency_key", "rocket-rides-stripe-mock")
	require.NoError(t, err)

	refund, err := client.RefundCreate(ctx, refundParams(charge.ID, "rocket-rides-stripe-mock-refund"))
	require.NoError(t, err)
	require.NotEmpty(t, refund.ID)

	partial := refundParams(charge.ID, "rocket-rides-stripe-mock-partial")
	partial.Amount = 500
	_, err = client.RefundCreate(ctx, partial)
	require.NoError(t, err)

	_, err = client.RefundFind(ctx, charge.ID, "idempotency_key", "rocket-rides-stripe-mock-refund")
	require.NoError(t, err)
}

// startStripeMock runs stripe-mock, the go tool of go.mod, on loopback
// ports of the system's choosing until the test ends, and returns its HTTP
// base URL.
func startStripeMock(t *testing.T) string {
	t.Helper()
	path, err := exec.Command("go", "tool", "-n", "stripe-mock").Output()
	require.NoError(t, err, "finding stripe-mock")
	cmd := exec.Command(strings.TrimSpace(string(path)), "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())

	// stripe-mock names the address it listens on once it does.
	const listening = "Listening for HTTP at address: "
	addrs := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if addr, ok := strings.CutPrefix(scanner.Text(), listening); ok {
				addrs <- addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-drained
		_ = cmd.Wait()
	})

	select {
	case addr := <-addrs:
		return "http://" + addr
	case <-drained:
		require.FailNow(t, "stripe-mock exited before listening")
	case <-time.After(30 * time.Second):
		require.FailNow(t, "stripe-mock did not listen within 30s")
	}
	return ""
}

func TestClassify(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		err     error
		outcome stripeclient.Outcome
		message string
	}{
		{"CardError", &stripe.Error{HTTPStatusCode: http.StatusPaymentRequired, Type: stripe.ErrorTypeCard, Msg: "Your card was declined."}, stripeclient.OutcomeDeclined, "Your card was declined."},
		{"CardErrorWrapped", fmt.Errorf("creating Stripe charge: %w", &stripe.Error{HTTPStatusCode: http.StatusPaymentRequired, Type: stripe.ErrorTypeCard, Msg: "Insufficient funds."}), stripeclient.OutcomeDeclined, "Insufficient funds."},
		{"InvalidRequest", &stripe.Error{HTTPStatusCode: http.StatusBadRequest, Type: stripe.ErrorTypeInvalidRequest}, stripeclient.OutcomeRejected, ""},
		{"ChargeAlreadyRefunded", fmt.Errorf("creating Stripe refund: %w", &stripe.Error{HTTPStatusCode: http.StatusBadRequest, Type: stripe.ErrorTypeInvalidRequest, Code: stripe.ErrorCodeChargeAlreadyRefunded}), stripeclient.OutcomeRejected, ""},
		{"RefundAmountTooLarge", &stripe.Error{HTTPStatusCode: http.StatusBadRequest, Type: stripe.ErrorTypeInvalidRequest, Code: stripe.ErrorCodeAmountTooLarge}, stripeclient.OutcomeRejected, ""},
		{"NotFound", &stripe.Error{HTTPStatusCode: http.StatusNotFound, Type: stripe.ErrorTypeInvalidRequest, Code: stripe.ErrorCodeResourceMissing}, stripeclient.OutcomeRejected, ""},
		{"IdempotencyKeyReused", &stripe.Error{HTTPStatusCode: http.StatusBadRequest, Type: stripe.ErrorTypeIdempotency}, stripeclient.OutcomeRejected, ""},
		{"Unauthorized", &stripe.Error{HTTPStatusCode: http.StatusUnauthorized, Type: stripe.ErrorTypeInvalidRequest}, stripeclient.OutcomeRejected, ""},
		{"Forbidden", &stripe.Error{HTTPStatusCode: http.StatusForbidden, Type: stripe.ErrorTypeInvalidRequest}, stripeclient.OutcomeRejected, ""},
		{"ServerError", &stripe.Error{HTTPStatusCode: http.StatusInternalServerError, Type: stripe.ErrorTypeAPI}, stripeclient.OutcomeIndeterminate, ""},
		{"ServiceUnavailable", &stripe.Error{HTTPStatusCode: http.StatusServiceUnavailable, Type: stripe.ErrorTypeAPI}, stripeclient.OutcomeIndeterminate, ""},
		{"RateLimited", &stripe.Error{HTTPStatusCode: http.StatusTooManyRequests, Type: stripe.ErrorTypeInvalidRequest}, stripeclient.OutcomeIndeterminate, ""},
		{"IdempotencyKeyInUse", &stripe.Error{HTTPStatusCode: http.StatusConflict, Type: stripe.ErrorTypeIdempotency}, stripeclient.OutcomeIndeterminate, ""},
		{"NetworkError", fmt.Errorf("creating Stripe charge: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), stripeclient.OutcomeIndeterminate, ""},
		{"Timeout", fmt.Errorf("creating Stripe charge: %w", context.DeadlineExceeded), stripeclient.OutcomeIndeterminate, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outcome, message := stripeclient.Classify(tt.err)
			require.Equal(t, tt.outcome, outcome)
			require.Equal(t, tt.message, message)
		})
	}
}

// TestClassifyFromWire classifies what stripe-go makes of real answers:
// the fake's, and a server that does not answer.
func TestClassifyFromWire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Declined", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{})
		customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_chargeCustomerFail")
		require.NoError(t, err)
		_, err = client.ChargeCreate(ctx, chargeParams(customer, "key-declined"))
		outcome, message := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeDeclined, outcome)
		require.Equal(t, "Your card was declined.", message)
	})

	t.Run("UnknownCustomer", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{})
		_, err := client.ChargeCreate(ctx, chargeParams("cus_missing", "key-unknown-customer"))
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeRejected, outcome)
	})

	t.Run("ServerError", func(t *testing.T) {
		t.Parallel()
		_, client := newFakeClient(t, stripefake.Config{FailBeforeRate: 1})
		customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
		require.NoError(t, err)
		_, err = client.ChargeCreate(ctx, chargeParams(customer, "key-server-error"))
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome)
	})

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close()
		client := newClient(t, &stripeclient.ClientConfig{APIBase: server.URL, APIKey: stripefaketest.APIKey})
		_, err := client.ChargeCreate(ctx, chargeParams("cus_1", "key-refused"))
		require.Error(t, err)
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome)
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		unblock := make(chan struct{})
		server := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-unblock }))
		t.Cleanup(server.Close)
		t.Cleanup(func() { close(unblock) })
		client := newClient(t, &stripeclient.ClientConfig{APIBase: server.URL, APIKey: stripefaketest.APIKey, Timeout: 50 * time.Millisecond})
		_, err := client.ChargeCreate(ctx, chargeParams("cus_1", "key-timeout"))
		require.Error(t, err)
		outcome, _ := stripeclient.Classify(err)
		require.Equal(t, stripeclient.OutcomeIndeterminate, outcome)
	})
}

// TestChargeFind checks that the search pages through all of a customer's
// charges and looks only at that customer's.
func TestChargeFind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, client := newFakeClient(t, stripefake.Config{})
	customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)
	other, err := client.CustomerCreate(ctx, "other@example.com", "tok_visa")
	require.NoError(t, err)

	// The oldest charge is on the last of several pages, newest first.
	const numCharges = 205
	for i := range numCharges {
		_, err := client.ChargeCreate(ctx, chargeParams(customer, "key-"+strconv.Itoa(i)))
		require.NoError(t, err)
	}
	_, err = client.ChargeCreate(ctx, chargeParams(other, "key-other"))
	require.NoError(t, err)
	require.Len(t, fake.Charges(), numCharges+1)

	found, err := client.ChargeFind(ctx, customer, "idempotency_key", "key-0")
	require.NoError(t, err)
	require.NotNil(t, found)
	require.Equal(t, fake.Charges()[0].ID, found.ID)

	found, err = client.ChargeFind(ctx, customer, "idempotency_key", "key-other")
	require.NoError(t, err)
	require.Nil(t, found, "another customer's charge")
}

// TestChargeGet checks that a charge is read back by id with its refunds'
// total, and that an unknown id is Stripe's 404.
func TestChargeGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, client := newFakeClient(t, stripefake.Config{})
	customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)
	created, err := client.ChargeCreate(ctx, chargeParams(customer, "key-get"))
	require.NoError(t, err)
	_, err = client.RefundCreate(ctx, &stripeclient.RefundParams{Charge: created.ID, IdempotencyKey: "refund-key-get"})
	require.NoError(t, err)

	charge, err := client.ChargeGet(ctx, created.ID)
	require.NoError(t, err)
	require.Equal(t, created.ID, charge.ID)
	require.Equal(t, "1", charge.Metadata["ride_id"])
	require.True(t, charge.Refunded)
	require.EqualValues(t, 2000, charge.AmountRefunded)

	_, err = client.ChargeGet(ctx, "ch_missing")
	var stripeErr *stripe.Error
	require.ErrorAs(t, err, &stripeErr)
	require.Equal(t, http.StatusNotFound, stripeErr.HTTPStatusCode)
}

func TestCustomerExists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, client := newFakeClient(t, stripefake.Config{})
	customer, err := client.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)

	exists, err := client.CustomerExists(ctx, customer)
	require.NoError(t, err)
	require.True(t, exists)

	exists, err = client.CustomerExists(ctx, "cus_missing")
	require.NoError(t, err)
	require.False(t, exists)
}
