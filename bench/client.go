package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/rides"
)

// rideParams are the coordinates of every ride request (rideRequestParams
// as the API stores them).
func rideParams() rides.Params {
	return rides.Params{OriginLat: 37.7749, OriginLon: -122.4194, TargetLat: 37.8044, TargetLon: -122.2712}
}

// newHTTPClient returns a client with keep-alive connections, as many as
// there are workers.
func newHTTPClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DisableCompression:  true,
			IdleConnTimeout:     time.Minute,
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
		},
	}
}

// answer is what an HTTP side answered.
type answer struct {
	body       []byte
	replayed   bool
	retryAfter string
	status     int
}

// postRide asks baseURL for a ride as email (demo mode's Authorization)
// with the idempotency key, form-encoded as the original's clients send it.
func postRide(ctx context.Context, client *http.Client, baseURL, email, key string) (*answer, error) {
	req, err := apiclient.NewRequest(ctx, baseURL, &apiclient.Ride{Email: email, IdempotencyKey: key, Body: apiclient.RideForm(rideParams(), false)})
	if err != nil {
		return nil, err
	}
	return send(client, req)
}

// postRideUntilDefinitive is postRide retried with the same key, as a
// client of the API must, while the answer is a 503 that asks for a retry
// (overloaded, or the database slow on a loaded machine): setup needs every
// key finished, not a measurement of how often the first try succeeds.
func postRideUntilDefinitive(ctx context.Context, client *http.Client, baseURL, email, key string) (*answer, error) {
	for attempt := 1; ; attempt++ {
		ans, err := postRide(ctx, client, baseURL, email, key)
		if err != nil || ans.status != http.StatusServiceUnavailable || ans.retryAfter == "" || attempt == setupMaxAttempts {
			return ans, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(setupRetryPause):
		}
	}
}

// How setup retries a request that answered 503 with Retry-After.
const (
	setupMaxAttempts = 20
	setupRetryPause  = 250 * time.Millisecond
)

// cancelRide asks baseURL to cancel ride rideID as email, with the key.
func cancelRide(ctx context.Context, client *http.Client, baseURL, email, key string, rideID int64) (*answer, error) {
	req, err := apiclient.NewCancelRequest(ctx, baseURL, email, key, rideID, "")
	if err != nil {
		return nil, err
	}
	return send(client, req)
}

// send sends req and reads the answer.
func send(client *http.Client, req *http.Request) (*answer, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sending %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return &answer{
		body:       body,
		replayed:   resp.Header.Get(apiclient.HeaderIdempotentReplayed) == "true",
		retryAfter: resp.Header.Get("Retry-After"),
		status:     resp.StatusCode,
	}, nil
}

// recordAnswer records a request that started at start, and whether it got
// the status (and the replay marker) the scenario expects.
func recordAnswer(rec *Recorder, start time.Time, ans *answer, err error, wantStatus int, wantReplayed bool) {
	switch {
	case err != nil:
		rec.Record(start, "transport_error", err)
	case ans.status != wantStatus || ans.replayed != wantReplayed:
		rec.Record(start, strconv.Itoa(ans.status), fmt.Errorf("want %d (replayed %t), got %d (replayed %t): %.300s",
			wantStatus, wantReplayed, ans.status, ans.replayed, ans.body))
	default:
		rec.Record(start, strconv.Itoa(ans.status), nil)
	}
}

// recordLimit records a request of the limit that started at start.
func recordLimit(rec *Recorder, start time.Time, err error) {
	if err != nil {
		rec.Record(start, "error", err)
		return
	}
	rec.Record(start, "ok", nil)
}
