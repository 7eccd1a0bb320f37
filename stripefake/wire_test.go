package stripefake_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// rawResponse is an answer of the fake, read without stripe-go.
type rawResponse struct {
	status int
	header http.Header
	body   map[string]any
}

// errorField returns the field name of the error in the body's envelope.
func (r rawResponse) errorField(t *testing.T, name string) any {
	t.Helper()
	envelope, ok := r.body["error"].(map[string]any)
	require.True(t, ok, "want an error envelope, got %v", r.body)
	return envelope[name]
}

// postForm posts form to url as stripe-go would, with the given
// idempotency key ("" for none).
func postForm(t *testing.T, url, idempotencyKey string, form url.Values) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_raw")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	return do(t, req)
}

// do sends req and decodes the JSON object it is answered with.
func do(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestMissingAPIKeyIsRejected(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/v1/charges", nil)
	require.NoError(t, err)

	resp := do(t, req)

	require.Equal(t, http.StatusUnauthorized, resp.status)
	// Stripe says "invalid_request_error" here: stripe-go's own type list
	// has no authentication_error.
	require.Equal(t, "invalid_request_error", resp.errorField(t, "type"))
	require.Contains(t, resp.errorField(t, "message"), "API key")
	require.Regexp(t, `^req_[0-9A-Za-z]{14}$`, resp.header.Get("Request-Id"))
}

func TestBasicAuthIsAccepted(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/v1/charges", nil)
	require.NoError(t, err)
	req.SetBasicAuth("sk_test_curl", "")

	resp := do(t, req)

	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, "list", resp.body["object"])
}

func TestUnknownRoutesAreStripeShaped404s(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})

	for _, route := range []struct{ method, path string }{
		{http.MethodGet, "/v1/payouts"},
		{http.MethodDelete, "/v1/refunds/re_123"},
		{http.MethodDelete, "/v1/charges"},
		{http.MethodPost, "/v1/charges/ch_123"},
		{http.MethodGet, "/"},
	} {
		t.Run(route.method+" "+route.path, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), route.method, baseURL+route.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer sk_test_raw")

			resp := do(t, req)

			require.Equal(t, http.StatusNotFound, resp.status)
			require.Equal(t, "invalid_request_error", resp.errorField(t, "type"))
			require.Contains(t, resp.errorField(t, "message"), "Unrecognized request URL")
			require.NotEmpty(t, resp.header.Get("Request-Id"))
		})
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	customer := postForm(t, baseURL+"/v1/customers", "", url.Values{"source": {"tok_visa"}})
	require.Equal(t, http.StatusOK, customer.status)

	charge := postForm(t, baseURL+"/v1/charges", "ride-5", url.Values{
		"amount":             {"1250"},
		"currency":           {"USD"},
		"customer":           {customer.body["id"].(string)},
		"metadata[ride_id]":  {"5"},
		"metadata[rider_id]": {"7"},
	})

	require.Equal(t, http.StatusOK, charge.status)
	require.Equal(t, "ride-5", charge.header.Get("Idempotency-Key"))
	require.Equal(t, "2023-10-16", charge.header.Get("Stripe-Version"))
	require.Equal(t, "charge", charge.body["object"])
	require.Equal(t, 1250.0, charge.body["amount"])
	require.Equal(t, "usd", charge.body["currency"])
	require.Equal(t, customer.body["id"], charge.body["customer"])
	require.Equal(t, map[string]any{"ride_id": "5", "rider_id": "7"}, charge.body["metadata"])
	require.Equal(t, "succeeded", charge.body["status"])
	require.Equal(t, true, charge.body["paid"])
	require.Equal(t, true, charge.body["captured"])
	require.Equal(t, false, charge.body["livemode"])
	require.Nil(t, charge.body["description"])
	require.Contains(t, charge.body, "description", "unset fields are null, not absent")
	require.IsType(t, 0.0, charge.body["created"])
}

func TestStripeVersionIsEchoed(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/v1/charges", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_raw")
	req.Header.Set("Stripe-Version", "2020-08-27")

	resp := do(t, req)

	require.Equal(t, "2020-08-27", resp.header.Get("Stripe-Version"))
}

func TestRefundWireFormat(t *testing.T) {
	t.Parallel()
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	customer := postForm(t, baseURL+"/v1/customers", "", url.Values{"source": {"tok_visa"}})
	charge := postForm(t, baseURL+"/v1/charges", "", url.Values{
		"amount": {"1250"}, "currency": {"usd"}, "customer": {customer.body["id"].(string)},
	})
	require.Equal(t, http.StatusOK, charge.status)
	require.Equal(t, 0.0, charge.body["amount_refunded"])
	require.Equal(t, false, charge.body["refunded"])
	require.NotContains(t, charge.body, "refunds", "not included unless expanded")
	chargeID := charge.body["id"].(string)

	refund := postForm(t, baseURL+"/v1/refunds", "cancel-5", url.Values{
		"charge":            {chargeID},
		"metadata[ride_id]": {"5"},
	})

	require.Equal(t, http.StatusOK, refund.status)
	require.Equal(t, "cancel-5", refund.header.Get("Idempotency-Key"))
	require.Equal(t, "refund", refund.body["object"])
	require.Equal(t, 1250.0, refund.body["amount"])
	require.Equal(t, chargeID, refund.body["charge"], "the charge's id, not the charge")
	require.Equal(t, "usd", refund.body["currency"])
	require.Equal(t, map[string]any{"ride_id": "5"}, refund.body["metadata"])
	require.Equal(t, "succeeded", refund.body["status"])
	require.IsType(t, 0.0, refund.body["created"])
	for _, field := range []string{"reason", "payment_intent", "receipt_number", "source_transfer_reversal", "transfer_reversal"} {
		require.Contains(t, refund.body, field)
		require.Nil(t, refund.body[field], field)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/v1/charges/"+chargeID+"?expand[]=refunds", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_raw")
	refunded := do(t, req)
	require.Equal(t, http.StatusOK, refunded.status)
	require.Equal(t, 1250.0, refunded.body["amount_refunded"])
	require.Equal(t, true, refunded.body["refunded"])
	refunds := refunded.body["refunds"].(map[string]any)
	require.Equal(t, "list", refunds["object"])
	require.Len(t, refunds["data"], 1)

	again := postForm(t, baseURL+"/v1/refunds", "", url.Values{"charge": {chargeID}})
	require.Equal(t, http.StatusBadRequest, again.status)
	require.Equal(t, "invalid_request_error", again.errorField(t, "type"))
	require.Equal(t, "charge_already_refunded", again.errorField(t, "code"))
	require.Equal(t, "Charge "+chargeID+" has already been refunded.", again.errorField(t, "message"))
}
