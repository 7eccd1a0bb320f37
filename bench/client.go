package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rocketrides/rocketrides/rides"
)

// rideForm is the body of every ride request, form-encoded as the
// original's clients send it.
const rideForm = "origin_lat=37.7749&origin_lon=-122.4194&target_lat=37.8044&target_lon=-122.2712"

// rideParams are rideForm's coordinates, as the API parses them.
func rideParams() rides.Params {
	return rides.Params{OriginLat: 37.7749, OriginLon: -122.4194, TargetLat: 37.8044, TargetLon: -122.2712}
}

// apiClient sends POST /rides to the API over keep-alive connections, as
// many as there are workers.
type apiClient struct {
	http *http.Client
	url  string
}

func newAPIClient(baseURL string, concurrency int) *apiClient {
	transport := &http.Transport{
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
	}
	return &apiClient{
		http: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		url:  baseURL + rides.RequestPath,
	}
}

// answer is the API's answer to a request.
type answer struct {
	body     string
	replayed bool
	status   int
}

// postRide asks for a ride as email with the idempotency key, failing on
// purpose after the ride is created if raiseError is set.
func (c *apiClient) postRide(ctx context.Context, email, key string, raiseError bool) (*answer, error) {
	body := rideForm
	if raiseError {
		body += "&raise_error=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", email)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting ride: %w", err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	return &answer{
		body:     string(respBody),
		replayed: resp.Header.Get("Idempotent-Replayed") == "true",
		status:   resp.StatusCode,
	}, nil
}

// close closes the client's idle connections.
func (c *apiClient) close() {
	c.http.CloseIdleConnections()
}

// recordAnswer records a request to the API that started at start, and
// whether it got the status (and the replay marker) the scenario expects.
func recordAnswer(rec *Recorder, start time.Time, ans *answer, err error, wantStatus int, wantReplayed bool) {
	switch {
	case err != nil:
		rec.Record(start, "transport_error", err)
	case ans.status != wantStatus || ans.replayed != wantReplayed:
		rec.Record(start, strconv.Itoa(ans.status), fmt.Errorf("want %d (replayed %t), got %d (replayed %t): %s",
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
