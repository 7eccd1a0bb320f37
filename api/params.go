package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

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
// quotes, as the IETF draft writes it), whose quotes are stripped.
func ParseIdempotencyKey(header string) (string, error) {
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
		raw := strings.TrimSpace(values.Get(coordinate.name))
		if raw == "" {
			return nil, missing(coordinate.name)
		}
		value, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return nil, notANumber(coordinate.name)
		}
		if err := checkCoordinate(i, value); err != nil {
			return nil, err
		}
		*targets[i] = value
	}
	if values.Has("raise_error") {
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
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, errMalformedJSON
	}
	var parsed rideParams
	targets := parsed.targets()
	for i, coordinate := range coordinates {
		raw, ok := fields[coordinate.name]
		if !ok || string(raw) == "null" {
			return nil, missing(coordinate.name)
		}
		var value float64
		if err := json.Unmarshal(raw, &value); err != nil {
			return nil, notANumber(coordinate.name)
		}
		if err := checkCoordinate(i, value); err != nil {
			return nil, err
		}
		*targets[i] = value
	}
	if raw, ok := fields["raise_error"]; ok {
		if err := json.Unmarshal(raw, &parsed.raiseError); err != nil || string(raw) == "null" {
			return nil, notABoolean("raise_error")
		}
	}
	return &parsed, nil
}

func (p *rideParams) targets() []*float64 {
	return []*float64{&p.params.OriginLat, &p.params.OriginLon, &p.params.TargetLat, &p.params.TargetLon}
}

func checkCoordinate(i int, value float64) error {
	coordinate := coordinates[i]
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return notANumber(coordinate.name)
	}
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

func notANumber(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Parameter '%s' must be a floating-point number.", name)}
}

func notABoolean(name string) error {
	return &ParamError{Param: name, Message: fmt.Sprintf("Parameter '%s' must be a boolean.", name)}
}
