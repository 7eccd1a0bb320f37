package stripefake

import (
	"fmt"
	"net/http"
	"strings"
)

// Stripe's error types, as sent in the "type" field of an error.
const (
	apiErrorType            = "api_error"
	cardErrorType           = "card_error"
	idempotencyErrorType    = "idempotency_error"
	invalidRequestErrorType = "invalid_request_error"
)

// stripeError is Stripe's error object. It is sent with its HTTP status,
// wrapped in Stripe's envelope: {"error": {...}}.
type stripeError struct {
	status int

	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Message     string `json:"message"`
	Param       string `json:"param,omitempty"`
	Charge      string `json:"charge,omitempty"`
	DocURL      string `json:"doc_url,omitempty"`
}

// response renders e in Stripe's error envelope.
func (e *stripeError) response() response {
	return encode(e.status, struct {
		Error *stripeError `json:"error"`
	}{e})
}

// withCode sets e's code and the documentation link Stripe gives with it.
func (e *stripeError) withCode(code string) *stripeError {
	e.Code = code
	e.DocURL = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
	return e
}

func invalidRequest(status int, param, format string, args ...any) *stripeError {
	return &stripeError{
		status:  status,
		Type:    invalidRequestErrorType,
		Message: fmt.Sprintf(format, args...),
		Param:   param,
	}
}

func missingAPIKey() *stripeError {
	return invalidRequest(http.StatusUnauthorized, "",
		"You did not provide an API key. You need to provide your API key in the Authorization header, "+
			"using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
}

func unrecognizedURL(r *http.Request) *stripeError {
	return invalidRequest(http.StatusNotFound, "",
		"Unrecognized request URL (%s: %s). stripefake serves only POST /v1/customers, "+
			"GET /v1/customers/{id}, POST /v1/charges, GET /v1/charges, GET /v1/charges/{id}, "+
			"POST /v1/refunds, GET /v1/refunds and GET /v1/refunds/{id}.", r.Method, r.URL.Path)
}

func malformedBody(err error) *stripeError {
	return invalidRequest(http.StatusBadRequest, "", "Invalid request body: %v", err)
}

func unknownParameter(param string, allowed []string) *stripeError {
	return invalidRequest(http.StatusBadRequest, param,
		"Received unknown parameter: %s. stripefake supports only: %s.", param, strings.Join(allowed, ", ")).
		withCode("parameter_unknown")
}

func missingParameter(param string) *stripeError {
	return invalidRequest(http.StatusBadRequest, param, "Missing required param: %s.", param).
		withCode("parameter_missing")
}

func invalidInteger(param, value string) *stripeError {
	return invalidRequest(http.StatusBadRequest, param, "Invalid integer: %s", value).
		withCode("parameter_invalid_integer")
}

func integerOutOfRange(param string, low, high int64) *stripeError {
	return invalidRequest(http.StatusBadRequest, param,
		"This value must be between %d and %d.", low, high).
		withCode("parameter_invalid_integer")
}

func invalidCurrency(value string) *stripeError {
	return invalidRequest(http.StatusBadRequest, "currency",
		"Invalid currency: %s. A currency is a three-letter ISO code, such as usd.", value)
}

func invalidChoice(param, value string, choices []string) *stripeError {
	return invalidRequest(http.StatusBadRequest, param,
		"Invalid %s: %s. It must be one of %s.", param, value, strings.Join(choices, ", "))
}

func exclusiveParameters(a, b string) *stripeError {
	return invalidRequest(http.StatusBadRequest, a,
		"You may only specify one of these parameters: %s, %s.", a, b).
		withCode("parameters_exclusive")
}

// noSuch reports that the object with the given id, named by param, does
// not exist. Stripe answers 404 for the object a URL names, and 400 for
// one a parameter names.
func noSuch(status int, object, param, id string) *stripeError {
	return invalidRequest(status, param, "No such %s: '%s'", object, id).
		withCode("resource_missing")
}

func chargeAlreadyRefunded(chargeID string) *stripeError {
	return invalidRequest(http.StatusBadRequest, "", "Charge %s has already been refunded.", chargeID).
		withCode("charge_already_refunded")
}

func chargeNotRefundable(chargeID string) *stripeError {
	return invalidRequest(http.StatusBadRequest, "charge",
		"Charge %s has failed, so there is nothing to refund.", chargeID).
		withCode("charge_not_refundable")
}

func refundAmountTooLarge(amount, unrefunded int64, currency string) *stripeError {
	return invalidRequest(http.StatusBadRequest, "amount",
		"Refund amount (%s) is greater than unrefunded amount on charge (%s)",
		formatAmount(amount, currency), formatAmount(unrefunded, currency)).
		withCode("amount_too_large")
}

// formatAmount renders amount, in the smallest unit of currency, as
// Stripe's messages do: $12.50, or 12.50 EUR for other currencies.
func formatAmount(amount int64, currency string) string {
	units := fmt.Sprintf("%d.%02d", amount/100, amount%100)
	if currency == "usd" {
		return "$" + units
	}
	return units + " " + strings.ToUpper(currency)
}

// The code and message of a declined charge, in its error and on the
// charge itself.
const (
	cardDeclinedCode    = "card_declined"
	cardDeclinedMessage = "Your card was declined."
)

func cardDeclined(chargeID string) *stripeError {
	e := &stripeError{
		status:      http.StatusPaymentRequired,
		Type:        cardErrorType,
		DeclineCode: "generic_decline",
		Message:     cardDeclinedMessage,
		Charge:      chargeID,
	}
	return e.withCode(cardDeclinedCode)
}

func idempotencyKeyReused(key string) *stripeError {
	return &stripeError{
		status: http.StatusBadRequest,
		Type:   idempotencyErrorType,
		Message: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters "+
			"they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key),
	}
}

func idempotencyKeyInUse(key string) *stripeError {
	e := &stripeError{
		status: http.StatusConflict,
		Type:   idempotencyErrorType,
		Message: fmt.Sprintf("There is currently another in-progress request using this idempotency key "+
			"(that probably means you submitted twice, and the other request is still going through): %s. "+
			"Please try again later.", key),
	}
	return e.withCode("idempotency_key_in_use")
}

// injectedFailure is the 500 that fault injection answers with. Its
// message says what happened, for whoever reads a failing test's output.
func injectedFailure(f fault) *stripeError {
	what := "nothing was done"
	if f == failAfter {
		what = "the request was carried out, only this response is lost"
	}
	return &stripeError{
		status:  http.StatusInternalServerError,
		Type:    apiErrorType,
		Message: fmt.Sprintf("An unknown error occurred (stripefake injected %s: %s).", f, what),
	}
}
