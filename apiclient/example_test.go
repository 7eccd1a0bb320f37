package apiclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/rides"
)

// A client asks for a ride, failing on purpose after the ride is created,
// and retries with the same key until the API answers for good.
func ExampleClient_PostRide() {
	// A stand-in for `rocketrides api`: it fails the request with
	// raise_error, and creates the ride of the retry.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("raise_error") == "true" {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"type":"https://github.com/rocketrides/rocketrides#problem-internal","title":"Internal Server Error","status":500,"detail":"..."}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"message":"Payment accepted. Your pilot is on their way!","ride":{"id":1}}`))
	}))
	defer api.Close()

	client, err := apiclient.NewClient(api.URL, nil)
	if err != nil {
		panic(err)
	}
	ride := &apiclient.Ride{
		Email:          "user@example.com",
		IdempotencyKey: uuid.NewString(), // one key for every attempt
		Body:           apiclient.RideForm(rides.Params{OriginLat: 37.7749, OriginLon: -122.4194}, true),
	}
	answer, err := client.PostRide(context.Background(), ride)
	if err != nil {
		panic(err)
	}
	fmt.Println(answer.Status, answer.ProblemType)

	ride.Body = apiclient.RideForm(rides.Params{OriginLat: 37.7749, OriginLon: -122.4194}, false)
	answer, err = client.PostRide(context.Background(), ride)
	if err != nil {
		panic(err)
	}
	fmt.Println(answer.Status, answer.Ride.ID)
	// Output:
	// 500 internal
	// 201 1
}
