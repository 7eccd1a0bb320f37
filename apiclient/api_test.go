package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// TestClientAgainstTheAPI sends every request of the client to the real API,
// in process over a rolled-back transaction and a fake Stripe: a ride, its
// state, its cancel and the cancel's replay, as a client sees them.
func TestClientAgainstTheAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exec := db.Savepoint{Tx: dbtest.Tx(ctx, t)}
	_, stripeURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, stripeURL)
	customerID, err := stripe.CustomerCreate(ctx, "rider@example.com", "tok_visa")
	require.NoError(t, err)
	user := testfactory.User(ctx, t, exec, &testfactory.UserOpts{StripeCustomerID: &customerID})
	server, err := api.NewServer(ridestest.NewCreator(t, exec, nil, stripe), nil)
	require.NoError(t, err)
	httpServer := httptest.NewServer(server)
	t.Cleanup(httpServer.Close)
	client, err := apiclient.NewClient(httpServer.URL, nil)
	require.NoError(t, err)

	created, err := client.PostRide(ctx, &apiclient.Ride{
		Email:          user.Email,
		IdempotencyKey: uuid.NewString(),
		Body:           apiclient.RideForm(rides.Params{OriginLat: 37.7749, OriginLon: -122.4194}, false),
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.Status, "body: %s", created.Body)
	rideID := created.Ride.ID

	got, err := client.GetRide(ctx, user.Email, rideID)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.Status, "body: %s", got.Body)
	require.Equal(t, rides.StatusCharged, got.RideStatus)
	require.Equal(t, created.Ride.StripeChargeID, got.Ride.StripeChargeID)
	require.Nil(t, got.StripeRefundID)
	require.Nil(t, got.CancelledAt)

	key := uuid.NewString()
	cancelled, err := client.CancelRide(ctx, user.Email, key, rideID, "plans changed")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, cancelled.Status, "body: %s", cancelled.Body)
	require.False(t, cancelled.Replayed)
	require.Equal(t, rideID, cancelled.Ride.ID)
	require.Equal(t, rides.StatusCancelled, cancelled.RideStatus)
	require.NotNil(t, cancelled.StripeRefundID)
	require.NotNil(t, cancelled.CancelledAt)

	// The retry replays the stored 200, byte for byte.
	replayed, err := client.CancelRide(ctx, user.Email, key, rideID, "plans changed")
	require.NoError(t, err)
	require.True(t, replayed.Replayed)
	require.Equal(t, cancelled.Body, replayed.Body)

	// The same key with another reason is a reuse.
	reused, err := client.CancelRide(ctx, user.Email, key, rideID, "")
	require.NoError(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, reused.Status)
	require.Equal(t, "idempotency-key-reused", reused.ProblemType)

	// Another key finds it cancelled.
	again, err := client.CancelRide(ctx, user.Email, uuid.NewString(), rideID, "")
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, again.Status)
	require.Equal(t, "ride-already-cancelled", again.ProblemType)

	got, err = client.GetRide(ctx, user.Email, rideID)
	require.NoError(t, err)
	require.Equal(t, rides.StatusCancelled, got.RideStatus)
	require.Equal(t, *cancelled.StripeRefundID, *got.StripeRefundID)
	require.True(t, cancelled.CancelledAt.Equal(*got.CancelledAt))

	missing, err := client.GetRide(ctx, user.Email, rideID+1_000_000)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, missing.Status)
	require.Equal(t, "ride-not-found", missing.ProblemType)
	require.Nil(t, missing.Ride)
}
