package stripefake

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// metadataParam is the parameter under which Stripe takes metadata, as
// nested keys: metadata[ride_id]=5.
const metadataParam = "metadata"

// parseForm returns the parameters of r: its query and, for a POST, its
// form-encoded body.
func parseForm(r *http.Request) (url.Values, *stripeError) {
	if err := r.ParseForm(); err != nil {
		return nil, malformedBody(err)
	}
	return r.Form, nil
}

// checkParams rejects the first parameter, in name order, that is not in
// allowed. Nested keys (metadata[ride_id]) are allowed when their outer
// name (metadata) is.
func checkParams(form url.Values, allowed ...string) *stripeError {
	for _, name := range slices.Sorted(maps.Keys(form)) {
		outer, _, _ := strings.Cut(name, "[")
		if !slices.Contains(allowed, outer) {
			return unknownParameter(name, allowed)
		}
	}
	return nil
}

// requiredString returns the value of the parameter name, which must be set.
func requiredString(form url.Values, name string) (string, *stripeError) {
	value := form.Get(name)
	if value == "" {
		return "", missingParameter(name)
	}
	return value, nil
}

// optionalInt returns the value of the integer parameter name, or def if
// it is not set. The value must lie in [low, high].
func optionalInt(form url.Values, name string, def, low, high int64) (int64, *stripeError) {
	value := form.Get(name)
	if value == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return 0, invalidInteger(name, value)
	}
	if n < low || n > high {
		return 0, integerOutOfRange(name, low, high)
	}
	return n, nil
}

// requiredAmount returns the amount parameter: a positive number of the
// currency's smallest unit (cents for usd).
func requiredAmount(form url.Values) (int64, *stripeError) {
	const name = "amount"
	if form.Get(name) == "" {
		return 0, missingParameter(name)
	}
	// Stripe caps amounts at eight digits.
	return optionalInt(form, name, 0, 1, 99_999_999)
}

// requiredCurrency returns the currency parameter, lower-cased as Stripe
// returns it. Any three-letter code is accepted.
func requiredCurrency(form url.Values) (string, *stripeError) {
	currency, err := requiredString(form, "currency")
	if err != nil {
		return "", err
	}
	currency = strings.ToLower(currency)
	if len(currency) != 3 || strings.Trim(currency, "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", invalidCurrency(currency)
	}
	return currency, nil
}

// parseExpand reports whether the expand parameter (expand[]=refunds, or
// expand[0]=refunds as stripe-go sends it) asks to expand field, the only
// field that can be expanded. It rejects every other parameter.
func parseExpand(form url.Values, field string) (bool, *stripeError) {
	if err := checkParams(form, "expand"); err != nil {
		return false, err
	}
	expand := false
	for name, values := range form {
		for _, value := range values {
			if value != field {
				return false, invalidRequest(http.StatusBadRequest, name,
					"This property cannot be expanded (%s). stripefake can expand only %s.", value, field)
			}
			expand = true
		}
	}
	return expand, nil
}

// metadata returns the metadata[...] parameters as a map, never nil,
// because Stripe's objects always carry a metadata object.
func metadata(form url.Values) map[string]string {
	md := make(map[string]string)
	for name := range form {
		inner, nested := strings.CutPrefix(name, metadataParam+"[")
		key, closed := strings.CutSuffix(inner, "]")
		if nested && closed {
			md[key] = form.Get(name)
		}
	}
	return md
}
