package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rocketrides/rocketrides/rides"
)

// Limits on a request's Idempotency-Key header.
const (
	IdempotencyKeyMinLength = 20
	IdempotencyKeyMaxLength = 255
)

// errKey is a problem with the Idempotency-Key header.
type errKey string

func (e errKey) Error() string { return string(e) }

// ParseIdempotencyKey validates an Idempotency-Key header: 20 to 255
// printable ASCII characters, given bare or as an RFC 8941 string (in double
// quotes, as the IETF draft writes it), whose quotes are stripped. A key
// holds no comma, quoted or not: a comma is two keys merged into one line.
func ParseIdempotencyKey(header string) (string, error) {
	if strings.Contains(header, ",") {
		return "", errAmbiguousHeader{name: headerIdempotencyKey, list: true}
	}
	key := header
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
		if strings.ContainsAny(key, `"\`) {
			return "", errKey("Idempotency-Key must be a plain string: no quotes or backslashes inside the quoted form.")
		}
	}
	switch {
	case key == "":
		return "", errKey("Please specify an idempotency key with the Idempotency-Key header.")
	case len(key) < IdempotencyKeyMinLength:
		return "", errKey(fmt.Sprintf("Idempotency-Key must be at least %d characters long.", IdempotencyKeyMinLength))
	case len(key) > IdempotencyKeyMaxLength:
		return "", errKey(fmt.Sprintf("Idempotency-Key must be at most %d characters long.", IdempotencyKeyMaxLength))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", errKey("Idempotency-Key must contain only printable ASCII characters.")
		}
	}
	return key, nil
}

// ParamError is a parameter that is missing or invalid.
type ParamError struct {
	Param   string
	Message string
}

func (e *ParamError) Error() string { return e.Message }

// Bodies that do not parse at all.
var (
	// errBodyUnreadable wraps the error of reading the body: the client
	// sent it too slowly for the server's read timeout, ended it before its
	// Content-Length, or broke its chunked encoding.
	errBodyUnreadable = errors.New("reading request body")
	errMalformedForm  = errors.New("request body is not a valid form")
	errMalformedJSON  = errors.New("request body is not a JSON object")
)

// rideParams is a parsed POST /rides body.
type rideParams struct {
	params     rides.Params
	raiseError bool
}

// coordinates lists the parameters in the order they are checked, with the
// bound each must stay within.
var coordinates = []struct {
	name  string
	limit float64
	kind  string
}{
	{"origin_lat", 90, "latitude"},
	{"origin_lon", 180, "longitude"},
	{"target_lat", 90, "latitude"},
	{"target_lon", 180, "longitude"},
}

// parseForm parses a form-encoded body.
func parseForm(body []byte) (*rideParams, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errMalformedForm
	}
	var parsed rideParams
	targets := parsed.targets()
	for i, coordinate := range coordinates {
		if len(values[coordinate.name]) > 1 {
			return nil, repeated(coordinate.name)
		}
		raw := strings.TrimSpace(values.Get(coordinate.name))
		if raw == "" {
			return nil, missing(coordinate.name)
		}
		value, err := parseNumber(coordinate.name, raw)
		if err != nil {
			return nil, err
		}
		if err := checkCoordinate(i, value); err != nil {
			return nil, err
		}
		*targets[i] = value
	}
	if values.Has("raise_error") {
		if len(values["raise_error"]) > 1 {
			return nil, repeated("raise_error")
		}
		switch values.Get("raise_error") {
		case "true":
			parsed.raiseError = true
		case "false":
		case "":
			return nil, missing("raise_error")
		default:
			return nil, notABoolean("raise_error")
		}
	}
	return &parsed, nil
}

// parseJSON parses a JSON body: an object with the four coordinates as
// numbers and, optionally, raise_error as a boolean.
func parseJSON(body []byte) (*rideParams, error) {
	fields, repeats, err := jsonObject(body)
	if err != nil {
		return nil, err
	}
	var parsed rideParams
	targets := parsed.targets()
	for i, coordinate := range coordinates {
		if repeats[coordinate.name] {
			return nil, repeated(coordinate.name)
		}
		raw, ok := fields[coordinate.name]
		if !ok || string(raw) == "null" {
			return nil, missing(coordinate.name)
		}
		value, err := parseNumber(coordinate.name, string(raw))
		if err != nil {
			return nil, err
		}
		if err := checkCoordinate(i, value); err != nil {
			return nil, err
		}
		*targets[i] = value
	}
	if raw, ok := fields["raise_error"]; ok {
		if repeats["raise_error"] {
			return nil, repeated("raise_error")
		}
		if err := json.Unmarshal(raw, &parsed.raiseError); err != nil || string(raw) == "null" {
			return nil, notABoolean("raise_error")
		}
	}
	return &parsed, nil
}

// jsonObject reads body, which must be one JSON object, into its members,
// and reports the names given more than once (encoding/json would keep the
// last one silently).
func jsonObject(body []byte) (map[string]json.RawMessage, map[string]bool, error) {
	decoder := json.NewDecoder(bytes.NewReader(body))
	if token, err := decoder.Token(); err != nil || token != json.Delim('{') {
		return nil, nil, errMalformedJSON
	}
	fields := make(map[string]json.RawMessage)
	repeats := make(map[string]bool)
	for decoder.More() {
		token, err := decoder.Token()
		name, ok := token.(string) // in an object, the token before a value is its name
		if err != nil || !ok {
			return nil, nil, errMalformedJSON
		}
		var value json.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return nil, nil, errMalformedJSON
		}
		if _, ok := fields[name]; ok {
			repeats[name] = true
		}
		fields[name] = value
	}
	if _, err := decoder.Token(); err != nil { // the closing brace
		return nil, nil, errMalformedJSON
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errMalformedJSON
	}
	return fields, repeats, nil
}

// parseNumber parses a parameter's number, in plain decimal notation as
// JSON writes numbers (RFC 8259 section 6), in a form as in JSON: no Go
// literals (1_0, 0x1p-2), no NaN or infinities, no leading plus or zeros.
// A number a double cannot hold, too large (1e400) or so small that it
// would become zero (1e-400), is refused rather than rounded.
func parseNumber(name, raw string) (float64, error) {
	if !isDecimal(raw) {
		return 0, notANumber(name)
	}
	value, err := strconv.ParseFloat(raw, 64)
	if err != nil { // out of range: the only error a decimal can give
		return 0, notANumber(name)
	}
	mantissa := raw
	if i := strings.IndexAny(raw, "eE"); i >= 0 {
		mantissa = raw[:i]
	}
	if value == 0 && strings.ContainsAny(mantissa, "123456789") {
		return 0, notANumber(name)
	}
	return value, nil
}

// isDecimal reports whether s is a number in JSON's grammar: an optional
// minus, an integer part without leading zeros, an optional fraction and an
// optional exponent.
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		start := i + 1
		if i = skipDigits(s, start); i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		if i = skipDigits(s, i); i == start {
			return false
		}
	}
	return i == len(s)
}

// skipDigits returns the index of the first byte at or after i in s that
// is not a decimal digit.
func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func (p *rideParams) targets() []*float64 {
	return []*float64{&p.params.OriginLat, &p.params.OriginLon, &p.params.TargetLat, &p.params.TargetLon}
}

func checkCoordinate(i int, value float64) error {
	coordinate := coordinates[i]
	if value < -coordinate.limit || value > coordinate.limit {
		return &ParamError{
			Param:   coordinate.name,
			Message: fmt.Sprintf("Parameter '%s' must be a valid %s coordinate.", coordinate.name, coordinate.kind),
		}
	}
	return nil
}

func missing(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Please specify parameter '%s'.", name)}
}

func repeated(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Parameter '%s' must be given once.", name)}
}

func notANumber(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Parameter '%s' must be a floating-point number.", name)}
}

func notABoolean(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Parameter '%s' must be a boolean.", name)}
}

// paramReason is POST /rides/{id}/cancel's one parameter.
const paramReason = "reason"

// parseCancelForm parses a form-encoded cancel body: an optional reason.
func parseCancelForm(body []byte) (string, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return "", errMalformedForm
	}
	if len(values[paramReason]) > 1 {
		return "", repeated(paramReason)
	}
	return checkReason(values.Get(paramReason))
}

// parseCancelJSON parses a JSON cancel body: an object with an optional
// reason, a string or null.
func parseCancelJSON(body []byte) (string, error) {
	fields, repeats, err := jsonObject(body)
	if err != nil {
		return "", err
	}
	if repeats[paramReason] {
		return "", repeated(paramReason)
	}
	raw, ok := fields[paramReason]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var reason string
	if err := json.Unmarshal(raw, &reason); err != nil {
		return "", &ParamError{Param: paramReason, Message: "Parameter 'reason' must be a string."}
	}
	return checkReason(reason)
}

// checkReason refuses a reason longer than rides.MaxReasonLength
// characters, or that PostgreSQL's text cannot hold (not UTF-8, or with a
// NUL character).
func checkReason(reason string) (string, error) {
	switch {
	case !utf8.ValidString(reason) || strings.IndexByte(reason, 0) >= 0:
		return "", &ParamError{Param: paramReason, Message: "Parameter 'reason' must be UTF-8 text without NUL characters."}
	case utf8.RuneCountInString(reason) > rides.MaxReasonLength:
		return "", &ParamError{Param: paramReason,
			Message: fmt.Sprintf("Parameter 'reason' must be at most %d characters.", rides.MaxReasonLength)}
	}
	return reason, nil
}
