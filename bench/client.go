package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/rides"
)

// rideParams are the coordinates of every ride request.
func rideParams() rides.Params {
	return rides.Params{OriginLat: 37.7749, OriginLon: -122.4194, TargetLat: 37.8044, TargetLon: -122.2712}
}

// newAPIClient returns a client of the API at baseURL over keep-alive
// connections, as many as there are workers.
func newAPIClient(baseURL string, concurrency int) (*apiclient.Client, error) {
	transport := &http.Transport{
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
	}
	return apiclient.NewClient(baseURL, &apiclient.ClientConfig{HTTPClient: &http.Client{Transport: transport}})
}

// postRide asks for a ride as email with the idempotency key, form-encoded
// as the original's clients send it, failing on purpose after the ride is
// created if raiseError is set.
func postRide(ctx context.Context, client *apiclient.Client, email, key string, raiseError bool) (*apiclient.Answer, error) {
	return client.PostRide(ctx, &apiclient.Ride{Email: email, IdempotencyKey: key, Body: apiclient.RideForm(rideParams(), raiseError)})
}

// recordAnswer records a request to the API that started at start, and
// whether it got the status (and the replay marker) the scenario expects.
func recordAnswer(rec *Recorder, start time.Time, ans *apiclient.Answer, err error, wantStatus int, wantReplayed bool) {
	switch {
	case err != nil:
		rec.Record(start, "transport_error", err)
	case ans.Status != wantStatus || ans.Replayed != wantReplayed:
		rec.Record(start, strconv.Itoa(ans.Status), fmt.Errorf("want %d (replayed %t), got %d (replayed %t): %s",
			wantStatus, wantReplayed, ans.Status, ans.Replayed, ans.Body))
	default:
		rec.Record(start, strconv.Itoa(ans.Status), nil)
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
