package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/admin"
	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// testBundle is an admin server, started on a free port, over a database
// of its own holding the receipt job of one real POST /rides.
type testBundle struct {
	// job is the send_ride_receipt job in River.
	job *rivertype.JobInsertResult
	// ride is the ride the request created.
	ride *rides.CreatedBody
	// url is the admin server's base URL.
	url string
}

// setup creates a ride through the API's handler over the Stripe fake,
// moves its staged receipt job into River as the enqueuer does (taking it
// out of staged_jobs and inserting it in the same transaction), and starts
// an admin server on an insert-only River client, as `rocketrides api`
// does.
func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)

	_, stripeURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, stripeURL)
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customerID, err := stripe.CustomerCreate(ctx, email, "tok_visa")
	require.NoError(t, err)
	testfactory.User(ctx, t, pool, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID})

	creator := ridestest.NewCreator(t, pool, nil, stripe)
	form := url.Values{"origin_lat": {"0.0"}, "origin_lon": {"0.0"}, "target_lat": {"0.0"}, "target_lon": {"0.0"}}
	request := httptest.NewRequest(http.MethodPost, rides.RequestPath, strings.NewReader(form.Encode()))
	request.Header.Set("Authorization", email)
	request.Header.Set("Idempotency-Key", testfactory.KeyValue())
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	recorder := httptest.NewRecorder()
	apiServer, err := api.NewServer(creator, nil)
	require.NoError(t, err)
	apiServer.ServeHTTP(recorder, request)
	require.Equal(t, http.StatusCreated, recorder.Code, "body: %s", recorder.Body)
	var ride rides.CreatedBody
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &ride))

	riverClient, err := jobs.NewRiverClient(pool, nil)
	require.NoError(t, err)
	job := enqueueReceipt(t, pool, riverClient, ride.Ride.ID)

	server, err := admin.NewServer(riverClient, metrics.New(), &admin.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	require.NoError(t, err)
	require.NoError(t, server.Start(ctx))
	t.Cleanup(server.Stop)
	return &testBundle{job: job, ride: &ride, url: "http://" + server.Addr()}
}

// enqueueReceipt moves the staged receipt of ride into River in one
// transaction and returns River's job.
func enqueueReceipt(t *testing.T, pool *pgxpool.Pool, riverClient *river.Client[pgx.Tx], rideID int64) *rivertype.JobInsertResult {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var args rides.ReceiptArgs
	require.NoError(t, tx.QueryRow(ctx,
		"DELETE FROM staged_jobs WHERE job_name = $1 AND (job_args->>'ride_id')::bigint = $2 RETURNING job_args",
		rides.JobNameSendRideReceipt, rideID).Scan(&args))
	job, err := riverClient.InsertTx(ctx, tx, args, nil)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	return job
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	response, err := http.Get(url)
	require.NoError(t, err)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	require.NoError(t, err)
	return response, string(body)
}

func TestServer(t *testing.T) {
	t.Parallel()
	bundle := setup(t)

	t.Run("Metrics", func(t *testing.T) {
		t.Parallel()
		response, body := get(t, bundle.url+admin.PathMetrics)
		require.Equal(t, http.StatusOK, response.StatusCode)
		require.Contains(t, body, "rocketrides_receipts_sent_total")
	})

	t.Run("RootRedirectsToRiverUI", func(t *testing.T) {
		t.Parallel()
		response, body := get(t, bundle.url+"/")
		require.Equal(t, http.StatusOK, response.StatusCode)
		require.Equal(t, admin.PathRiverUI, response.Request.URL.Path)
		require.Contains(t, body, "<html")
	})

	// River UI's own API, which its pages call, lists the request's job.
	t.Run("RiverUIListsReceiptJob", func(t *testing.T) {
		t.Parallel()
		response, body := get(t, bundle.url+admin.PathRiverUI+"api/jobs?state=available")
		require.Equal(t, http.StatusOK, response.StatusCode, body)
		var list struct {
			Data []struct {
				ID   int64  `json:"id"`
				Kind string `json:"kind"`
				Args string `json:"args"` // JSON, as a string
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &list))
		require.Len(t, list.Data, 1)
		require.Equal(t, bundle.job.Job.ID, list.Data[0].ID)
		require.Equal(t, rides.JobNameSendRideReceipt, list.Data[0].Kind)
		var args rides.ReceiptArgs
		require.NoError(t, json.Unmarshal([]byte(list.Data[0].Args), &args), body)
		require.Equal(t, bundle.ride.Ride.ID, args.RideID)
	})
}

func TestServerStartAddressTaken(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer listener.Close()
	riverClient, err := jobs.NewRiverClient(nil, nil)
	require.NoError(t, err)
	server, err := admin.NewServer(riverClient, metrics.New(), &admin.ServerConfig{Addr: listener.Addr().String()})
	require.NoError(t, err)
	err = server.Start(context.Background())
	require.ErrorContains(t, err, "admin: listening on "+listener.Addr().String())
	server.Stop() // not started: returns at once
}

func TestServerStopsWithContext(t *testing.T) {
	t.Parallel()
	riverClient, err := jobs.NewRiverClient(nil, nil)
	require.NoError(t, err)
	var logs strings.Builder
	server, err := admin.NewServer(riverClient, metrics.New(), &admin.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, server.Start(ctx))
	response, _ := get(t, "http://"+server.Addr()+admin.PathMetrics)
	require.Equal(t, http.StatusOK, response.StatusCode)
	response, body := get(t, "http://"+server.Addr()+admin.PathPprof+"heap?debug=1")
	require.Equal(t, http.StatusOK, response.StatusCode)
	require.Contains(t, body, "heap profile", "Go's profiles are served")

	cancel()
	server.Stop() // waits for the stop that ctx began
	require.Contains(t, logs.String(), fmt.Sprintf(`msg="admin: started" river_ui=http://%s/riverui/ metrics=http://%s/metrics`, server.Addr(), server.Addr()))
	require.Contains(t, logs.String(), "admin: stopped")
	_, err = http.Get("http://" + server.Addr() + admin.PathMetrics)
	require.Error(t, err, "the listener is closed")
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	riverClient, err := jobs.NewRiverClient(nil, nil)
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		config *admin.ServerConfig
		want   string
	}{
		{"PortOnly", &admin.ServerConfig{Addr: "5001"}, `admin: Addr must be host:port, got "5001"`},
		{"NegativeShutdownTimeout", &admin.ServerConfig{ShutdownTimeout: -1}, "admin: ShutdownTimeout must not be negative, got -1ns"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := admin.NewServer(riverClient, metrics.New(), tt.config)
			require.EqualError(t, err, tt.want)
		})
	}
	_, err = admin.NewServer(nil, metrics.New(), nil)
	require.EqualError(t, err, "admin: a River client is required")
	_, err = admin.NewServer(riverClient, nil, nil)
	require.EqualError(t, err, "admin: metrics are required")
}
