package api_test

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
)

// FuzzParseIdempotencyKey checks the header's parser on any input: it
// never panics, a key it accepts is 20 to 255 printable ASCII characters
// without a comma, the header itself or its content between double quotes,
// and a header it rejects gives an error and no key.
func FuzzParseIdempotencyKey(f *testing.F) {
	valid := strings.Repeat("a", api.IdempotencyKeyMinLength)
	for _, seed := range []string{
		"",
		`""`,
		`"`,
		valid,
		valid[1:],
		`"` + valid + `"`,
		`"` + valid[1:] + `"`,
		`"` + valid + `\"` + `"`,
		`"` + valid + `"` + `"`,
		`"` + valid,
		strings.Repeat("~", api.IdempotencyKeyMaxLength),
		strings.Repeat("~", api.IdempotencyKeyMaxLength+1),
		`"` + strings.Repeat("~", api.IdempotencyKeyMaxLength) + `"`,
		valid + "\t",
		valid + "\x7f",
		valid + "é",
		valid + "\xff",
		"3f2b8a34-6cbc-4c9d-9a3e-5a1f0c7d2e11",
		valid + ", " + valid,
		valid + "," + valid,
		`"` + valid + `", "` + valid + `"`,
		`"` + valid + "," + valid + `"`,
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, header string) {
		key, err := api.ParseIdempotencyKey(header)
		if err != nil {
			require.Empty(t, key)
			require.NotEmpty(t, err.Error())
			return
		}
		require.GreaterOrEqual(t, len(key), api.IdempotencyKeyMinLength)
		require.LessOrEqual(t, len(key), api.IdempotencyKeyMaxLength)
		require.NotContains(t, key, ",", "a comma is a list of keys")
		for i := range len(key) {
			require.True(t, key[i] >= 0x20 && key[i] <= 0x7e, "byte %d of %q is not printable ASCII", i, key)
		}
		if key != header {
			require.Equal(t, `"`+key+`"`, header, "only enclosing quotes are stripped")
			require.NotContains(t, key, `"`)
			require.NotContains(t, key, `\`)
		}
	})
}

// FuzzCreateRide drives POST /rides, the real handler over a rolled-back
// transaction and a fake Stripe, with fuzzed credentials (from a small
// set), Idempotency-Key (one header line per line of the fuzzed key),
// Content-Type and body. Whatever comes in, the
// server never panics and never answers 5xx, except the 500 that
// raise_error asks for; every answer but a 201 is a 4xx problem with its
// four members, whose status is the HTTP status.
func FuzzCreateRide(f *testing.F) {
	const (
		formType = "application/x-www-form-urlencoded"
		jsonType = "application/json"
		key      = "fuzz-key-0123456789abcdef"
	)
	validJSON := `{"origin_lat": 37.7749, "origin_lon": -122.4194, "target_lat": -33.8688, "target_lon": 151.2093}`
	form := validForm().Encode()

	// Seeds: each check of the handler, from each side.
	for _, seed := range []struct {
		auth        uint8
		key         string
		contentType string
		body        string
	}{
		{authUser, key, formType, form},
		{authUser, key, jsonType, validJSON},
		{authUser, key, jsonType + "; charset=utf-8", validJSON},
		{authUser, key, "", form},
		{authDeclined, key, formType, form},
		{authNone, key, formType, form},
		{authUnknown, key, formType, form},
		{authUnknown, "short", "text/plain", "x"},
		{authNotUTF8, key, formType, form},
		{authNUL, key, formType, form},
		{authUser, "", formType, form},
		{authUser, "short", formType, form},
		{authUser, strings.Repeat("k", api.IdempotencyKeyMaxLength+1), formType, form},
		{authUser, `"` + key + `"`, formType, form},
		{authUser, `"` + key + `\""`, formType, form},
		{authUser, key + "\x7f", formType, form},
		{authUser, key + "é", formType, form},
		{authUser, key, formType, form + "&pad=" + strings.Repeat("x", api.MaxBodyBytesDefault)},
		{authUser, key, "text/plain", form},
		{authUser, key, "application/", form},
		{authUser, key, formType, "origin_lat=1&origin_lon=&target_lat=1&target_lon=1"},
		{authUser, key, formType, "origin_lat=NaN&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=0&origin_lon=-Infinity&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=0&origin_lon=0&target_lat=1e400&target_lon=0"},
		{authUser, key, formType, "origin_lat=abc&target_lon=abc"},
		{authUser, key, formType, "origin_lat=90.0001&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=0&origin_lon=0&target_lat=0&target_lon=-180.0001"},
		{authUser, key, formType, "%zz"},
		{authUser, key, formType, form + "&raise_error=maybe"},
		{authUser, key, formType, form + "&raise_error="},
		{authUser, key, formType, form + "&raise_error=false"},
		{authUser, key, formType, form + "&raise_error=true"},
		{authUser, key, jsonType, `{"origin_lat": "1.5", "origin_lon": 0, "target_lat": 0, "target_lon": 0}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": null, "target_lat": 0, "target_lon": 0}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 1e400, "target_lon": 0}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": "true"}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": true}`},
		{authUser, key, jsonType, `{"origin_lat": 0,`},
		{authUser, key, jsonType, `[0, 0, 0, 0]`},
		{authUser, key, jsonType, `null`},
		{authTwoLines, key, formType, form},
		{authList, key, formType, form},
		{authTwoLines, "short", "text/plain", "x"},
		{authUser, key + "\n" + key, formType, form},
		{authUser, key + "\n" + key + "x", formType, form},
		{authUser, key + ", " + key, formType, form},
		{authUser, `"` + key + `", "` + key + `"`, formType, form},
		{authUnknown, key + "\n" + key, formType, form},
		{authUser, key + "\nshort", formType, form + "&pad=" + strings.Repeat("x", api.MaxBodyBytesDefault)},
		{authUser, key, formType, form + "&origin_lat=1"},
		{authUser, key, formType, form + "&target_lon="},
		{authUser, key, formType, form + "&raise_error=true&raise_error=true"},
		{authUser, key, formType, form + "&note=a&note=b"},
		{authUser, key, formType, "origin_lat=1_0&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=0x1p-2&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=%2B1&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=01&origin_lon=.5&target_lat=1.&target_lon=1e"},
		{authUser, key, formType, "origin_lat=1e-400&origin_lon=0&target_lat=0&target_lon=0"},
		{authUser, key, formType, "origin_lat=1e-310&origin_lon=-0&target_lat=0e-400&target_lon=1.5E%2B1"},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "origin_lat": 1}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "raise_error": true, "raise_error": true}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0, "note": {"origin_lat": 1}}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 1e-400, "target_lon": 0}`},
		{authUser, key, jsonType, `{"origin_lat": 0, "origin_lon": 0, "target_lat": 0, "target_lon": 0} {}`},
	} {
		// Each seed in each mode: auth below numAuths is demo mode's.
		for i := range authModes {
			f.Add(seed.auth+uint8(i*numAuths), seed.key, seed.contentType, []byte(seed.body))
		}
	}
	for _, auth := range []uint8{authOtherMode, authWrongSecret, authRevoked} {
		for i := range authModes {
			f.Add(auth+uint8(i*numAuths), key, formType, []byte(form))
			f.Add(auth+uint8(i*numAuths), "short", "text/plain", []byte("x"))
		}
	}

	f.Fuzz(func(t *testing.T, auth uint8, key, contentType string, body []byte) {
		mode := authModes[int(auth)/numAuths%len(authModes)]
		bundle := setup(t, &setupOpts{auth: mode})
		user := bundle.authOf(bundle.user)
		otherMode := "Bearer " + bundle.apiKeys[bundle.user.ID]
		if mode == rides.AuthModeAPIKey {
			otherMode = bundle.user.Email
		}
		authorization := []string{
			authUser:        user,
			authDeclined:    bundle.authOf(bundle.declined),
			authNone:        "",
			authUnknown:     bundle.unknownAuth(),
			authNotUTF8:     user[:len(user)-1] + "\xff",
			authNUL:         user[:len(user)-1] + "\x00",
			authTwoLines:    user,
			authList:        user + ", " + bundle.unknownAuth(),
			authOtherMode:   otherMode,
			authWrongSecret: "Bearer " + bundle.apiKeys[bundle.user.ID][:len(bundle.apiKeys[bundle.user.ID])-8] + "00000000",
			authRevoked:     bundle.revokedAuth(t, bundle.user),
		}[int(auth)%numAuths]

		r := newRequest(authorization, "", contentType, string(body))
		if int(auth)%numAuths == authTwoLines {
			r.Header.Add("Authorization", bundle.authOf(bundle.declined))
		}
		if key != "" {
			for line := range strings.SplitSeq(key, "\n") {
				r.Header.Add("Idempotency-Key", line)
			}
		}
		recorder := bundle.serve(r)

		if recorder.Code == http.StatusCreated {
			require.Equal(t, "application/json", recorder.Header().Get("Content-Type"))
			require.True(t, json.Valid(recorder.Body.Bytes()), "body: %s", recorder.Body)
			return
		}
		if recorder.Code == http.StatusInternalServerError && asksRaiseError(contentType, body) {
			return
		}
		require.True(t, recorder.Code >= 400 && recorder.Code < 500, "status %d, body: %s", recorder.Code, recorder.Body)
		require.Equal(t, problem.ContentType, recorder.Header().Get("Content-Type"))
		var members map[string]any
		require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &members), "body: %s", recorder.Body)
		require.ElementsMatch(t, []string{"type", "title", "status", "detail"}, mapKeys(members), "body: %s", recorder.Body)
		var details problem.Details
		require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &details))
		require.Equal(t, recorder.Code, details.Status)
	})
}

// The credentials FuzzCreateRide picks from, in the mode authModes[auth /
// numAuths % len(authModes)].
const (
	authUser        = iota // the user, whose card Stripe accepts
	authDeclined           // the user whose card Stripe declines
	authNone               // no Authorization header
	authUnknown            // an email no user has, or a key no row has
	authNotUTF8            // the user's, its last byte not UTF-8: no text PostgreSQL can compare
	authNUL                // the user's, its last byte a NUL, which PostgreSQL's text cannot hold
	authTwoLines           // two Authorization lines: the user's and another
	authList               // the user's and another in one line
	authOtherMode          // the user's credential of the other mode
	authWrongSecret        // the user's key with a wrong secret
	authRevoked            // a revoked key of the user's
	numAuths
)

// asksRaiseError reports whether body, read as the server reads it, asks
// for raise_error: the one 500 a client may cause on purpose.
func asksRaiseError(contentType string, body []byte) bool {
	mediaType := "application/x-www-form-urlencoded"
	if contentType != "" {
		var err error
		if mediaType, _, err = mime.ParseMediaType(contentType); err != nil {
			return false
		}
	}
	if mediaType == "application/json" {
		var fields map[string]json.RawMessage
		return json.Unmarshal(body, &fields) == nil && string(fields["raise_error"]) == "true"
	}
	values, err := url.ParseQuery(string(body))
	return err == nil && values.Get("raise_error") == "true"
}
