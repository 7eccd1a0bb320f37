package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db/testfactory"
)

// TestCreateRideChecks drives every check of POST /rides, and the order in
// which they come, through the server.
func TestCreateRideChecks(t *testing.T) {
	forEachAuthMode(t, testCreateRideChecks)
}

func testCreateRideChecks(t *testing.T) {
	t.Parallel()

	const (
		formType = "application/x-www-form-urlencoded"
		jsonType = "application/json"
	)
	validJSON := `{"origin_lat": 37.7749, "origin_lon": -122.4194, "target_lat": -33.8688, "target_lon": 151.2093}`
	// withForm is the valid form with name set to value ("" deletes it).
	withForm := func(name, value string) string {
		values := validForm()
		if value == "" {
			values.Del(name)
		} else {
			values.Set(name, value)
		}
		return values.Encode()
	}
	key := func(n int) string { return strings.Repeat("k", n) }
	// padded is a valid form body of exactly n bytes.
	padded := func(n int) string {
		body := validForm().Encode() + "&pad="
		return body + strings.Repeat("x", n-len(body))
	}

	tests := []struct {
		name        string
		badUser     bool   // send a credential of no user
		key         string // "" for a fresh valid key
		contentType string
		body        string
		status      int
		kind        string // problem kind, for an error
		detail      string // the problem's detail, for an error
		// header, if set, edits the request's headers once they are set.
		header func(h http.Header, authorization, key string)
	}{
		{name: "Key19Chars", key: key(19), contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key", detail: "Idempotency-Key must be at least 20 characters long."},
		{name: "Key20Chars", key: key(20), contentType: formType, body: validForm().Encode(), status: http.StatusCreated},
		{name: "Key255Chars", key: key(255), contentType: formType, body: validForm().Encode(), status: http.StatusCreated},
		{name: "Key256Chars", key: key(256), contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key", detail: "Idempotency-Key must be at most 255 characters long."},
		{name: "KeyNonASCII", key: "clé-" + key(20), contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key", detail: "Idempotency-Key must contain only printable ASCII characters."},
		{name: "KeyControlCharacter", key: key(20) + "\x7f", contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key", detail: "Idempotency-Key must contain only printable ASCII characters."},
		{name: "KeyQuoted", key: `"` + key(20) + `"`, contentType: formType, body: validForm().Encode(), status: http.StatusCreated},
		{name: "KeyQuotedTooShort", key: `"` + key(19) + `"`, contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key", detail: "Idempotency-Key must be at least 20 characters long."},
		{name: "KeyQuotedWithEscape", key: `"` + key(20) + `\""`, contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "invalid-idempotency-key"},
		{name: "KeyTwoLines", contentType: formType, body: validForm().Encode(), header: addKey(key(20)), status: http.StatusBadRequest, kind: "ambiguous-header", detail: "Idempotency-Key must be sent once: the request has more than one Idempotency-Key header line."},
		{name: "KeyTwoSameLines", contentType: formType, body: validForm().Encode(), header: func(h http.Header, _, key string) { h.Add("Idempotency-Key", key) }, status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "KeyList", key: key(20) + ", " + key(21), contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "ambiguous-header", detail: "Idempotency-Key must hold one value, not a comma-separated list."},
		{name: "KeyListWithoutSpace", key: key(20) + "," + key(21), contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "KeyQuotedList", key: `"` + key(20) + `", "` + key(21) + `"`, contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "KeyQuotedComma", key: `"` + key(20) + "," + key(21) + `"`, contentType: formType, body: validForm().Encode(), status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "AuthTwoLines", contentType: formType, body: validForm().Encode(), header: addAuth("nobody@example.com"), status: http.StatusBadRequest, kind: "ambiguous-header", detail: "Authorization must be sent once: the request has more than one Authorization header line."},
		{name: "AuthTwoSameLines", contentType: formType, body: validForm().Encode(), header: func(h http.Header, auth, _ string) { h.Add("Authorization", auth) }, status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "AuthList", contentType: formType, body: validForm().Encode(), header: func(h http.Header, auth, _ string) { h.Set("Authorization", auth+", nobody@example.com") }, status: http.StatusBadRequest, kind: "ambiguous-header", detail: "Authorization must hold one value, not a comma-separated list."},
		{name: "AuthAmbiguityBeforeKey", key: key(3), contentType: formType, body: validForm().Encode(), header: addAuth("nobody@example.com"), status: http.StatusBadRequest, kind: "ambiguous-header", detail: "Authorization must be sent once: the request has more than one Authorization header line."},
		{name: "AuthBeforeKeyAmbiguity", badUser: true, contentType: formType, body: validForm().Encode(), header: addKey(key(20)), status: http.StatusUnauthorized, kind: "auth-invalid"},
		{name: "KeyAmbiguityBeforeBodySize", contentType: "text/plain", body: padded(api.MaxBodyBytesDefault + 1), header: addKey(key(20)), status: http.StatusBadRequest, kind: "ambiguous-header"},
		{name: "AuthBeforeKey", badUser: true, key: key(3), contentType: "text/plain", body: "x", status: http.StatusUnauthorized, kind: "auth-invalid"},
		{name: "KeyBeforeBodySize", key: key(3), contentType: "text/plain", body: padded(api.MaxBodyBytesDefault + 1), status: http.StatusBadRequest, kind: "invalid-idempotency-key"},
		{name: "Body64KiB", contentType: formType, body: padded(api.MaxBodyBytesDefault), status: http.StatusCreated},
		{name: "Body64KiBPlusOne", contentType: formType, body: padded(api.MaxBodyBytesDefault + 1), status: http.StatusRequestEntityTooLarge, kind: "body-too-large"},
		{name: "BodySizeBeforeContentType", contentType: "text/plain", body: padded(api.MaxBodyBytesDefault + 1), status: http.StatusRequestEntityTooLarge, kind: "body-too-large"},
		{name: "ContentTypeTextPlain", contentType: "text/plain", body: validForm().Encode(), status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type"},
		{name: "ContentTypeMalformed", contentType: "application/", body: validForm().Encode(), status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type"},
		{name: "ContentTypeBeforeParams", contentType: "text/plain", body: "", status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type"},
		{name: "ParamMissing", contentType: formType, body: withForm("target_lon", ""), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Please specify parameter 'target_lon'."},
		{name: "ParamEmpty", contentType: formType, body: "origin_lat=1&origin_lon=&target_lat=1&target_lon=1", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Please specify parameter 'origin_lon'."},
		{name: "ParamNaN", contentType: formType, body: withForm("origin_lat", "NaN"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamInf", contentType: formType, body: withForm("origin_lon", "Inf"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be a floating-point number."},
		{name: "ParamMinusInfinity", contentType: formType, body: withForm("target_lat", "-Infinity"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a floating-point number."},
		{name: "ParamOverflow", contentType: formType, body: withForm("target_lat", "1e400"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a floating-point number."},
		{name: "ParamUnderflow", contentType: formType, body: withForm("target_lat", "1e-400"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a floating-point number."},
		{name: "ParamNegativeUnderflow", contentType: formType, body: withForm("origin_lon", "-2e-324"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be a floating-point number."},
		{name: "ParamGoDigitSeparator", contentType: formType, body: withForm("origin_lat", "1_0"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamHexFloat", contentType: formType, body: withForm("origin_lat", "0x1p-2"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamHex", contentType: formType, body: withForm("target_lon", "0x10"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lon' must be a floating-point number."},
		{name: "ParamLeadingPlus", contentType: formType, body: withForm("origin_lat", "+1"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamLeadingZero", contentType: formType, body: withForm("origin_lat", "01"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamLeadingDot", contentType: formType, body: withForm("origin_lat", ".5"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamTrailingDot", contentType: formType, body: withForm("origin_lat", "1."), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamExponentWithoutDigits", contentType: formType, body: withForm("origin_lat", "1e"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamInfinityWord", contentType: formType, body: withForm("origin_lat", "infinity"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "ParamExponent", contentType: formType, body: withForm("origin_lat", "1.5E+1"), status: http.StatusCreated},
		{name: "ParamNegativeExponent", contentType: formType, body: withForm("origin_lat", "-25e-1"), status: http.StatusCreated},
		{name: "ParamSubnormal", contentType: formType, body: withForm("origin_lat", "1e-310"), status: http.StatusCreated},
		{name: "ParamZeroWithExponent", contentType: formType, body: withForm("origin_lat", "0e-400"), status: http.StatusCreated},
		{name: "ParamMinusZero", contentType: formType, body: withForm("origin_lat", "-0.0"), status: http.StatusCreated},
		{name: "ParamSurroundingSpaces", contentType: formType, body: withForm("origin_lat", " 1.5 "), status: http.StatusCreated},
		{name: "ParamRepeated", contentType: formType, body: validForm().Encode() + "&target_lat=1", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be given once."},
		{name: "ParamRepeatedSameValue", contentType: formType, body: validForm().Encode() + "&origin_lat=0.0", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be given once."},
		{name: "ParamRepeatedEmpty", contentType: formType, body: validForm().Encode() + "&origin_lon=", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be given once."},
		{name: "RaiseErrorRepeated", contentType: formType, body: withForm("raise_error", "false") + "&raise_error=true", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'raise_error' must be given once."},
		{name: "UnknownParamRepeated", contentType: formType, body: validForm().Encode() + "&note=a&note=b", status: http.StatusCreated},
		{name: "ParamNotANumber", contentType: formType, body: withForm("target_lon", "abc"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lon' must be a floating-point number."},
		{name: "ParamsCheckedInOrder", contentType: formType, body: "origin_lat=abc&target_lon=abc", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "LatitudeAbove90", contentType: formType, body: withForm("origin_lat", "90.0001"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a valid latitude coordinate."},
		{name: "LatitudeBelowMinus90", contentType: formType, body: withForm("target_lat", "-90.0001"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a valid latitude coordinate."},
		{name: "LatitudeBounds", contentType: formType, body: "origin_lat=90&origin_lon=0&target_lat=-90&target_lon=0", status: http.StatusCreated},
		{name: "LongitudeBelowMinus180", contentType: formType, body: withForm("origin_lon", "-180.0001"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be a valid longitude coordinate."},
		{name: "LongitudeAbove180", contentType: formType, body: withForm("target_lon", "180.0001"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lon' must be a valid longitude coordinate."},
		{name: "LongitudeBounds", contentType: formType, body: "origin_lat=0&origin_lon=-180&target_lat=0&target_lon=180", status: http.StatusCreated},
		{name: "RaiseErrorMaybe", contentType: formType, body: withForm("raise_error", "maybe"), status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'raise_error' must be a boolean."},
		{name: "RaiseErrorEmpty", contentType: formType, body: validForm().Encode() + "&raise_error=", status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Please specify parameter 'raise_error'."},
		{name: "RaiseErrorFalse", contentType: formType, body: withForm("raise_error", "false"), status: http.StatusCreated},
		{name: "RaiseErrorTrue", contentType: formType, body: withForm("raise_error", "true"), status: http.StatusInternalServerError, kind: "internal"},
		{name: "NoContentTypeIsForm", contentType: "", body: validForm().Encode(), status: http.StatusCreated},
		{name: "JSON", contentType: jsonType, body: validJSON, status: http.StatusCreated},
		{name: "JSONWithCharset", contentType: jsonType + "; charset=utf-8", body: validJSON, status: http.StatusCreated},
		{name: "JSONRaiseErrorFalse", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": false}`, status: http.StatusCreated},
		{name: "JSONRaiseErrorTrue", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": true}`, status: http.StatusInternalServerError, kind: "internal"},
		{name: "JSONRaiseErrorString", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": "true"}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'raise_error' must be a boolean."},
		{name: "JSONRaiseErrorNull", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": null}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'raise_error' must be a boolean."},
		{name: "JSONStringNumber", contentType: jsonType, body: `{"origin_lat": "1.5", "origin_lon": 0, "target_lat": 0, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lat' must be a floating-point number."},
		{name: "JSONMissing", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Please specify parameter 'target_lon'."},
		{name: "JSONNull", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": null, "target_lat": 0, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Please specify parameter 'origin_lon'."},
		{name: "JSONOverflow", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 1e400, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a floating-point number."},
		{name: "JSONUnderflow", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 1e-400, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lat' must be a floating-point number."},
		{name: "JSONSubnormal", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": -1e-310, "target_lon": 0}`, status: http.StatusCreated},
		{name: "JSONExponent", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 1E1, "target_lon": -1.8e+2}`, status: http.StatusCreated},
		{name: "JSONRepeated", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "origin_lon": 1}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be given once."},
		{name: "JSONRepeatedNull", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": null, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'target_lon' must be given once."},
		{name: "JSONRaiseErrorRepeated", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": true, "raise_error": false}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'raise_error' must be given once."},
		{name: "JSONUnknownRepeated", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "note": {"a": [1]}, "note": "b"}`, status: http.StatusCreated},
		{name: "JSONNestedRepeatsAreNotParams", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "note": {"origin_lat": 1}}`, status: http.StatusCreated},
		{name: "JSONTrailingData", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0} {}`, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "JSONEmptyBody", contentType: jsonType, body: ``, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "JSONNullBody", contentType: jsonType, body: `null`, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "JSONOutOfRange", contentType: jsonType, body: `{"origin_lat": 0, "origin_lon": 180.0001, "target_lat": 0, "target_lon": 0}`, status: http.StatusUnprocessableEntity, kind: "invalid-parameter", detail: "Parameter 'origin_lon' must be a valid longitude coordinate."},
		{name: "JSONMalformed", contentType: jsonType, body: `{"origin_lat": 0,`, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "JSONNotAnObject", contentType: jsonType, body: `[0, 0, 0, 0]`, status: http.StatusBadRequest, kind: "malformed-body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bundle := setup(t, nil)
			authorization := bundle.authOf(bundle.user)
			if tt.badUser {
				authorization = bundle.unknownAuth()
			}
			value := tt.key
			if value == "" {
				value = testfactory.KeyValue()
			}

			r := newRequest(authorization, value, tt.contentType, tt.body)
			if tt.header != nil {
				tt.header(r.Header, authorization, value)
			}
			recorder := bundle.serve(r)

			if tt.status == http.StatusCreated {
				body := requireCreated(t, recorder)
				stored := strings.Trim(value, `"`)
				bundle.requireRideCharged(t, bundle.user, stored, body)
				// A quoted key is the same key as its bare form.
				requireReplay(t, recorder, bundle.serve(newRequest(authorization, stored, tt.contentType, tt.body)))
				return
			}
			details := requireProblem(t, recorder, tt.status, tt.kind)
			if tt.detail != "" {
				require.Equal(t, tt.detail, details.Detail)
			}
			require.Zero(t, bundle.fake.ChargeRequests())
		})
	}
}

// addKey adds a second Idempotency-Key line, key.
func addKey(key string) func(http.Header, string, string) {
	return func(h http.Header, _, _ string) { h.Add("Idempotency-Key", key) }
}

// addAuth adds a second Authorization line, email.
func addAuth(email string) func(http.Header, string, string) {
	return func(h http.Header, _, _ string) { h.Add("Authorization", email) }
}

// TestParseIdempotencyKey checks the header's parser on its own.
func TestParseIdempotencyKey(t *testing.T) {
	t.Parallel()

	valid := strings.Repeat("a", api.IdempotencyKeyMinLength)
	for header, want := range map[string]string{
		valid:             valid,
		`"` + valid + `"`: valid,
		strings.Repeat("~", api.IdempotencyKeyMaxLength):   strings.Repeat("~", api.IdempotencyKeyMaxLength),
		"with spaces and symbols !#$%&'()*+-./:;<=>?@[]^_": "with spaces and symbols !#$%&'()*+-./:;<=>?@[]^_",
	} {
		got, err := api.ParseIdempotencyKey(header)
		require.NoError(t, err, header)
		require.Equal(t, want, got)
	}
	for _, header := range []string{
		"",
		`""`,
		valid[1:],
		strings.Repeat("a", api.IdempotencyKeyMaxLength+1),
		`"` + strings.Repeat("a", api.IdempotencyKeyMaxLength+1) + `"`,
		valid + "\t",
		valid + "\n",
		valid + "é",
		`"` + valid + `\"` + `"`,
		`"` + valid + `\\` + `"`,
		valid + "," + valid,
		valid + ", " + valid,
		valid + ",",
		`"` + valid + `", "` + valid + `"`,
		`"` + valid + "," + `"`,
	} {
		_, err := api.ParseIdempotencyKey(header)
		require.Error(t, err, "%q", header)
	}
}
