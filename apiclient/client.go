// Package apiclient is a small Go client of the rocket-rides HTTP API: it
// builds and sends POST /rides with the original's headers (Authorization,
// as an API key or the demo's email, and Idempotency-Key), a form or JSON
// body and raise_error when asked, POST /rides/{id}/cancel with an optional
// reason, and GET /rides/{id}, and
// reads the answer: its status, problem type, replay marker and ride.
//
// The simulator, the bench, the chaos run and the API's tests all build
// their requests here, so that they send what a real client sends.
package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
)

// Content types of a POST /rides body.
const (
	ContentTypeForm = "application/x-www-form-urlencoded"
	ContentTypeJSON = "application/json"
)

// HeaderIdempotentReplayed is the header, set to "true", that marks an
// answer replayed from a finished key, as Stripe does.
const HeaderIdempotentReplayed = "Idempotent-Replayed"

// maxBody is how much of an answer's body the client reads: the API's
// answers are a few hundred bytes.
const maxBody = 64 << 10

// Defaults of ClientConfig.
const (
	ClientTimeoutDefault = 30 * time.Second
)

// ClientConfig configures a Client. Zero fields take their defaults.
type ClientConfig struct {
	// HTTPClient sends the requests. Nil means http.DefaultClient's
	// transport; a caller that needs a pool of its own (the bench) passes
	// one.
	HTTPClient *http.Client

	// Timeout bounds each request, its answer read included. Zero means
	// ClientTimeoutDefault; it must not be negative.
	Timeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every
// default applied.
func (c *ClientConfig) withDefaults() *ClientConfig {
	var config ClientConfig
	if c != nil {
		config = *c
	}
	if config.HTTPClient == nil {
		config.HTTPClient = &http.Client{}
	}
	if config.Timeout == 0 {
		config.Timeout = ClientTimeoutDefault
	}
	return &config
}

// validate rejects a configuration the client cannot run with.
func (c *ClientConfig) validate() error {
	if c.Timeout < 0 {
		//lint:ignore ST1005 the message starts with the field's name; NewClient prefixes it
		return fmt.Errorf("Timeout must not be negative, got %s", c.Timeout)
	}
	return nil
}

// Client sends requests to one API. It is safe for concurrent use.
type Client struct {
	baseURL string
	config  *ClientConfig
}

// NewClient returns a client of the API at baseURL, such as
// "http://127.0.0.1:5000". A nil config means every default.
func NewClient(baseURL string, config *ClientConfig) (*Client, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("apiclient: %w", err)
	}
	parsed, err := url.Parse(baseURL)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return nil, fmt.Errorf("apiclient: base URL must be an absolute http or https URL, got %q", baseURL)
	}
	return &Client{baseURL: baseURL, config: config}, nil
}

// BaseURL is the API's base URL, as given to NewClient.
func (c *Client) BaseURL() string {
	return c.baseURL
}

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() {
	c.config.HTTPClient.CloseIdleConnections()
}

// PostRide sends ride and reads the answer. Any answer, an error status
// included, is an Answer; the error is for no answer (connection refused,
// timeout, cancelled, the API gone while answering).
func (c *Client) PostRide(ctx context.Context, ride *Ride) (*Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.config.Timeout)
	defer cancel()
	req, err := NewRequest(ctx, c.baseURL, ride)
	if err != nil {
		return nil, err
	}
	return c.do(req, "posting ride")
}

// CancelRide sends POST /rides/{rideID}/cancel with authorization (see
// Authorization) as its Authorization header, with the
// idempotency key key and, unless it is empty, reason as the form's
// reason (an empty reason sends an empty body), and reads the answer as
// PostRide does. A 200's ride has its RideStatus "cancelled", its
// StripeRefundID and its CancelledAt. Retry it with the same key and
// reason until the answer is definitive.
func (c *Client) CancelRide(ctx context.Context, authorization, key string, rideID int64, reason string) (*Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.config.Timeout)
	defer cancel()
	req, err := NewCancelRequest(ctx, c.baseURL, authorization, key, rideID, reason)
	if err != nil {
		return nil, err
	}
	return c.do(req, "cancelling ride")
}

// GetRide sends GET /rides/{rideID} with authorization (see Authorization)
// and reads the
// answer as PostRide does: a 200's ride with its RideStatus, refund and
// cancellation time, or a 404 ride-not-found for no such ride and for
// another user's alike.
func (c *Client) GetRide(ctx context.Context, authorization string, rideID int64) (*Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.config.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.baseURL, "/")+rides.RequestPath+"/"+strconv.FormatInt(rideID, 10), nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	setHeader(req, "Authorization", authorization)
	return c.do(req, "getting ride")
}

// do sends req and reads the answer; doing names the request in an error.
func (c *Client) do(req *http.Request, doing string) (*Answer, error) {
	resp, err := c.config.HTTPClient.Do(req)
	if err != nil {
		// The error without the method and URL that net/http adds, which
		// every caller knows: short enough for a log line.
		if urlErr, ok := errors.AsType[*url.Error](err); ok {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	defer resp.Body.Close()
	return readAnswer(resp)
}

// Authorization is the value of the Authorization header that
// authenticates with apiKey (Bearer, for an API in api_key mode) or, without
// one, as the user email (demo mode); empty if both are.
func Authorization(apiKey, email string) string {
	if apiKey != "" {
		return "Bearer " + apiKey
	}
	return email
}

// setHeader sets header name to value, unless value is empty.
func setHeader(req *http.Request, name, value string) {
	if value != "" {
		req.Header.Set(name, value)
	}
}

// Ride is one POST /rides request.
type Ride struct {
	// APIKey is the user's API key, for an API in api_key mode (the mode
	// for production): sent as "Authorization: Bearer <APIKey>".
	APIKey string

	// Email is the user the request authenticates as, for an API in demo
	// mode: the original's clients send it as the Authorization header.
	// Empty, with no APIKey, leaves the header out; setting both is an
	// error.
	Email string

	// IdempotencyKey is sent as the Idempotency-Key header. Empty leaves
	// the header out.
	IdempotencyKey string

	// Body is the request's body: RideForm or RideJSON, or any other for a
	// test of bad input.
	Body Body
}

// Body is a request body and its content type.
type Body struct {
	// ContentType is sent as the Content-Type header. Empty leaves the
	// header out.
	ContentType string

	Data string
}

// Form is values form-encoded, for a caller that writes the parameters
// itself (a test of bad input, a parameter written differently).
func Form(values url.Values) Body {
	return Body{ContentType: ContentTypeForm, Data: values.Encode()}
}

// RideForm is params form-encoded as the original's clients send them
// (origin_lat=0.0&...), with raise_error=true if raiseError: the API then
// fails on purpose after creating the ride.
func RideForm(params rides.Params, raiseError bool) Body {
	values := url.Values{
		"origin_lat": {formatCoordinate(params.OriginLat)},
		"origin_lon": {formatCoordinate(params.OriginLon)},
		"target_lat": {formatCoordinate(params.TargetLat)},
		"target_lon": {formatCoordinate(params.TargetLon)},
	}
	if raiseError {
		values.Set("raise_error", "true")
	}
	return Form(values)
}

// RideJSON is params as a JSON object, with "raise_error": true if
// raiseError.
func RideJSON(params rides.Params, raiseError bool) Body {
	body := struct {
		rides.Params
		RaiseError bool `json:"raise_error,omitempty"`
	}{params, raiseError}
	data, err := json.Marshal(body)
	if err != nil {
		panic(err) // four floats and a bool always encode
	}
	return Body{ContentType: ContentTypeJSON, Data: string(data)}
}

// formatCoordinate writes v as the shortest decimal that reads back as v,
// with a decimal point as Ruby writes floats: 0.0, 37.7749.
func formatCoordinate(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// NewRequest builds ride as a POST /rides to the API at baseURL. The API's
// tests serve it in process; Client.PostRide sends it.
func NewRequest(ctx context.Context, baseURL string, ride *Ride) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		strings.TrimSuffix(baseURL, "/")+rides.RequestPath, strings.NewReader(ride.Body.Data))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if ride.APIKey != "" && ride.Email != "" {
		return nil, errors.New("building request: set APIKey or Email, not both")
	}
	setHeader(req, "Authorization", Authorization(ride.APIKey, ride.Email))
	setHeader(req, "Idempotency-Key", ride.IdempotencyKey)
	setHeader(req, "Content-Type", ride.Body.ContentType)
	return req, nil
}

// NewCancelRequest builds POST /rides/{rideID}/cancel to the API at
// baseURL, with authorization (see Authorization) and the idempotency key key (each left out
// if empty), and reason form-encoded unless it is empty: then the body is
// empty, with no Content-Type. Client.CancelRide sends it.
func NewCancelRequest(ctx context.Context, baseURL, authorization, key string, rideID int64, reason string) (*http.Request, error) {
	var body Body
	if reason != "" {
		body = Form(url.Values{"reason": {reason}})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+rides.CancelPath(rideID), strings.NewReader(body.Data))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	setHeader(req, "Authorization", authorization)
	setHeader(req, "Idempotency-Key", key)
	setHeader(req, "Content-Type", body.ContentType)
	return req, nil
}

// Answer is the API's answer to a request.
type Answer struct {
	// Body is the answer's body (its first 64 KiB).
	Body []byte

	// CancelledAt is when a 200's ride was cancelled, nil if it is not.
	CancelledAt *time.Time

	// ProblemType is an error answer's problem type without
	// problem.TypeBase, such as "card-declined"; empty for a success or a
	// body that is no problem.
	ProblemType string

	// Replayed reports that the answer was stored by an earlier request
	// with the same key (the Idempotent-Replayed header).
	Replayed bool

	// Ride is the ride of a 201 (POST /rides) or of a 200 (GET /rides/{id},
	// POST /rides/{id}/cancel), nil for any other answer.
	Ride *rides.RideBody

	// RideStatus is a 200's ride's status: "pending_payment", "charged",
	// "declined" or "cancelled"; empty for any other answer.
	RideStatus string

	// Status is the HTTP status.
	Status int

	// StripeRefundID is a 200's ride's refund, nil if it has none.
	StripeRefundID *string
}

// readAnswer reads resp's body and parses what it says.
func readAnswer(resp *http.Response) (*Answer, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	answer := &Answer{
		Body:     body,
		Replayed: resp.Header.Get(HeaderIdempotentReplayed) == "true",
		Status:   resp.StatusCode,
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		var created rides.CreatedBody
		if json.Unmarshal(body, &created) == nil {
			answer.Ride = created.Ride
		}
		return answer, nil
	case http.StatusOK:
		// A cancel's ride is under "ride", beside a message
		// (rides.CancelledBody); a GET's is the body itself.
		var (
			cancelled rides.CancelledBody
			ride      *rides.RideStateBody
		)
		if json.Unmarshal(body, &cancelled) == nil && cancelled.Ride != nil {
			ride = cancelled.Ride
		} else if json.Unmarshal(body, &ride) != nil {
			ride = nil
		}
		if ride != nil && ride.RideBody != nil {
			answer.Ride, answer.RideStatus = ride.RideBody, ride.Status
			answer.CancelledAt, answer.StripeRefundID = ride.CancelledAt, ride.StripeRefundID
		}
		return answer, nil
	}
	var details problem.Details
	if json.Unmarshal(body, &details) == nil && strings.HasPrefix(details.Type, problem.TypeBase) {
		answer.ProblemType = strings.TrimPrefix(details.Type, problem.TypeBase)
	}
	return answer, nil
}
