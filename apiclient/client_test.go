package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
)

// received is what the test API got in one request.
type received struct {
	Header http.Header
	Method string
	Path   string
	Body   string
}

// newTestAPI starts an API that records each request in got and answers
// with answer.
func newTestAPI(t *testing.T, answer http.HandlerFunc) (string, <-chan *received) {
	t.Helper()
	got := make(chan *received, 1)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- &received{Header: r.Header, Method: r.Method, Path: r.URL.Path, Body: string(body)}
		answer(w, r)
	}))
	t.Cleanup(server.Close)
	return server.URL, got
}

func TestNewClient(t *testing.T) {
	t.Parallel()

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		client, err := NewClient("http://127.0.0.1:5000", nil)
		require.NoError(t, err)
		require.Equal(t, ClientTimeoutDefault, client.config.Timeout)
		require.NotNil(t, client.config.HTTPClient)
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		for _, baseURL := range []string{"", "127.0.0.1:5000", "ftp://example.com", "http://", "http://%zz"} {
			_, err := NewClient(baseURL, nil)
			require.ErrorContains(t, err, "apiclient: base URL must be an absolute http or https URL", "base URL %q", baseURL)
		}
		_, err := NewClient("http://127.0.0.1:5000", &ClientConfig{Timeout: -time.Second})
		require.EqualError(t, err, "apiclient: Timeout must not be negative, got -1s")
	})
}

func TestPostRide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	params := rides.Params{OriginLat: 37.7749, OriginLon: -122.4194, TargetLat: 0, TargetLon: 1}

	t.Run("FormAndHeaders", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"message":"ok","ride":{"id":7,"stripe_charge_id":"ch_1"}}`))
		})
		client, err := NewClient(baseURL+"/", nil) // a trailing slash is no double slash
		require.NoError(t, err)

		answer, err := client.PostRide(ctx, &Ride{Email: "rider@example.com", IdempotencyKey: "key-0123456789abcdefghij", Body: RideForm(params, true)})
		require.NoError(t, err)

		req := <-got
		require.Equal(t, http.MethodPost, req.Method)
		require.Equal(t, "/rides", req.Path)
		require.Equal(t, "rider@example.com", req.Header.Get("Authorization"))
		require.Equal(t, "key-0123456789abcdefghij", req.Header.Get("Idempotency-Key"))
		require.Equal(t, ContentTypeForm, req.Header.Get("Content-Type"))
		form, err := url.ParseQuery(req.Body)
		require.NoError(t, err)
		require.Equal(t, url.Values{
			"origin_lat": {"37.7749"}, "origin_lon": {"-122.4194"}, "target_lat": {"0.0"}, "target_lon": {"1.0"},
			"raise_error": {"true"},
		}, form)

		require.Equal(t, http.StatusCreated, answer.Status)
		require.False(t, answer.Replayed)
		require.Empty(t, answer.ProblemType)
		require.Equal(t, int64(7), answer.Ride.ID)
		require.Equal(t, "ch_1", *answer.Ride.StripeChargeID)
	})

	t.Run("APIKey", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		_, err = client.PostRide(ctx, &Ride{APIKey: "rr_1_secret", IdempotencyKey: "key-0123456789abcdefghij", Body: RideForm(params, false)})
		require.NoError(t, err)
		require.Equal(t, []string{"Bearer rr_1_secret"}, (<-got).Header.Values("Authorization"))

		_, err = client.PostRide(ctx, &Ride{APIKey: "rr_1_secret", Email: "rider@example.com"})
		require.EqualError(t, err, "building request: set APIKey or Email, not both")
	})

	t.Run("JSONAndHeadersLeftOut", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderIdempotentReplayed, "true")
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusPaymentRequired)
			_ = json.NewEncoder(w).Encode(problem.New(http.StatusPaymentRequired, "card-declined", "Your card was declined."))
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		answer, err := client.PostRide(ctx, &Ride{Body: RideJSON(params, false)})
		require.NoError(t, err)

		req := <-got
		require.NotContains(t, req.Header, "Authorization")
		require.NotContains(t, req.Header, "Idempotency-Key")
		require.Equal(t, ContentTypeJSON, req.Header.Get("Content-Type"))
		require.JSONEq(t, `{"origin_lat": 37.7749, "origin_lon": -122.4194, "target_lat": 0, "target_lon": 1}`, req.Body)

		require.Equal(t, http.StatusPaymentRequired, answer.Status)
		require.True(t, answer.Replayed)
		require.Equal(t, "card-declined", answer.ProblemType)
		require.Nil(t, answer.Ride)
		require.Contains(t, string(answer.Body), "Your card was declined.")
	})

	t.Run("RawBody", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "not a problem", http.StatusBadGateway)
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		answer, err := client.PostRide(ctx, &Ride{Email: "rider@example.com", Body: Body{Data: "origin_lat="}})
		require.NoError(t, err)

		req := <-got
		require.NotContains(t, req.Header, "Content-Type")
		require.Equal(t, "origin_lat=", req.Body)
		require.Equal(t, http.StatusBadGateway, answer.Status)
		require.Empty(t, answer.ProblemType, "a body that is no problem has no type")
	})

	t.Run("NoAnswer", func(t *testing.T) {
		t.Parallel()
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close() // nothing listens there any more
		client, err := NewClient(server.URL, nil)
		require.NoError(t, err)

		_, err = client.PostRide(ctx, &Ride{Body: RideForm(params, false)})
		require.ErrorContains(t, err, "posting ride: dial tcp")
		require.NotContains(t, err.Error(), server.URL, "the URL, which the caller knows, is left out")
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		baseURL, _ := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) { <-release })
		defer close(release)
		client, err := NewClient(baseURL, &ClientConfig{Timeout: 10 * time.Millisecond})
		require.NoError(t, err)

		_, err = client.PostRide(ctx, &Ride{Body: RideForm(params, false)})
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestCancelRide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ReasonAndHeaders", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"message":"Ride cancelled. Your refund is on its way.","ride":{"id":7,"stripe_charge_id":"ch_1",` +
				`"status":"cancelled","stripe_refund_id":"re_1","cancelled_at":"2026-12-02T03:04:05Z"}}`))
		})
		client, err := NewClient(baseURL+"/", nil)
		require.NoError(t, err)

		answer, err := client.CancelRide(ctx, "rider@example.com", "key-0123456789abcdefghij", 7, "plans changed")
		require.NoError(t, err)

		req := <-got
		require.Equal(t, http.MethodPost, req.Method)
		require.Equal(t, "/rides/7/cancel", req.Path)
		require.Equal(t, "rider@example.com", req.Header.Get("Authorization"))
		require.Equal(t, "key-0123456789abcdefghij", req.Header.Get("Idempotency-Key"))
		require.Equal(t, ContentTypeForm, req.Header.Get("Content-Type"))
		require.Equal(t, "reason=plans+changed", req.Body)

		require.Equal(t, http.StatusOK, answer.Status)
		require.Equal(t, int64(7), answer.Ride.ID)
		require.Equal(t, "ch_1", *answer.Ride.StripeChargeID)
		require.Equal(t, "cancelled", answer.RideStatus)
		require.Equal(t, "re_1", *answer.StripeRefundID)
		require.Equal(t, time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC), *answer.CancelledAt)
	})

	t.Run("NoReasonIsAnEmptyBody", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(problem.New(http.StatusConflict, "ride-already-cancelled", "The ride is already cancelled."))
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		answer, err := client.CancelRide(ctx, "rider@example.com", "key-0123456789abcdefghij", 7, "")
		require.NoError(t, err)

		req := <-got
		require.NotContains(t, req.Header, "Content-Type")
		require.Empty(t, req.Body)
		require.Equal(t, http.StatusConflict, answer.Status)
		require.Equal(t, "ride-already-cancelled", answer.ProblemType)
		require.Nil(t, answer.Ride)
		require.Empty(t, answer.RideStatus)
	})

	t.Run("NoAnswer", func(t *testing.T) {
		t.Parallel()
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close()
		client, err := NewClient(server.URL, nil)
		require.NoError(t, err)

		_, err = client.CancelRide(ctx, "rider@example.com", "key-0123456789abcdefghij", 7, "")
		require.ErrorContains(t, err, "cancelling ride: dial tcp")
	})
}

func TestGetRide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Charged", func(t *testing.T) {
		t.Parallel()
		baseURL, got := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"id":7,"stripe_charge_id":"ch_1","status":"charged","stripe_refund_id":null,"cancelled_at":null}`))
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		answer, err := client.GetRide(ctx, "rider@example.com", 7)
		require.NoError(t, err)

		req := <-got
		require.Equal(t, http.MethodGet, req.Method)
		require.Equal(t, "/rides/7", req.Path)
		require.Equal(t, "rider@example.com", req.Header.Get("Authorization"))
		require.NotContains(t, req.Header, "Idempotency-Key")

		require.Equal(t, http.StatusOK, answer.Status)
		require.Equal(t, int64(7), answer.Ride.ID)
		require.Equal(t, "charged", answer.RideStatus)
		require.Nil(t, answer.StripeRefundID)
		require.Nil(t, answer.CancelledAt)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		baseURL, _ := newTestAPI(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", problem.ContentType)
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(problem.New(http.StatusNotFound, "ride-not-found", "No such ride."))
		})
		client, err := NewClient(baseURL, nil)
		require.NoError(t, err)

		answer, err := client.GetRide(ctx, "rider@example.com", 7)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, answer.Status)
		require.Equal(t, "ride-not-found", answer.ProblemType)
		require.Nil(t, answer.Ride)
	})
}
