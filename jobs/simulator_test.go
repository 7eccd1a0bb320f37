package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// simulatorRequest is what the test API received in one request.
type simulatorRequest struct {
	Authorization  string
	ContentType    string
	Form           map[string][]string
	IdempotencyKey string
	Method         string
	Path           string
}

// simulatorTestAPI is an API that records its requests and answers 500 to
// those with raise_error=true, 201 to the others.
type simulatorTestAPI struct {
	// received, if not nil, gets a signal for each request.
	received chan struct{}

	mu       sync.Mutex
	requests []simulatorRequest
}

func (a *simulatorTestAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.requests = append(a.requests, simulatorRequest{
		Authorization:  r.Header.Get("Authorization"),
		ContentType:    r.Header.Get("Content-Type"),
		Form:           r.PostForm,
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		Method:         r.Method,
		Path:           r.URL.Path,
	})
	a.mu.Unlock()
	if a.received != nil {
		a.received <- struct{}{}
	}
	if r.PostForm.Get("raise_error") == "true" {
		http.Error(w, `{"title":"simulated failure"}`, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"message":"Payment accepted. Your pilot is on their way!"}` + "\n"))
}

func (a *simulatorTestAPI) Requests() []simulatorRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]simulatorRequest(nil), a.requests...)
}

func TestSimulator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		api  *simulatorTestAPI
		logs *bytes.Buffer
	}

	setup := func(t *testing.T, config *SimulatorConfig) (*Simulator, *testBundle) {
		t.Helper()
		bundle := &testBundle{api: &simulatorTestAPI{}, logs: &bytes.Buffer{}}
		server := httptest.NewServer(bundle.api)
		t.Cleanup(server.Close)
		if config == nil {
			config = &SimulatorConfig{}
		}
		config.APIURL = server.URL
		return NewSimulator(config, slog.New(slog.NewTextHandler(bundle.logs, nil))), bundle
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		simulator := NewSimulator(nil, nil)
		require.Equal(t, SimulatorAPIURLDefault, simulator.config.APIURL)
		require.Equal(t, SimulatorConcurrencyDefault, simulator.config.Concurrency)
		require.Equal(t, SimulatorEmailDefault, simulator.config.Email)
		require.Equal(t, SimulatorIntervalDefault, simulator.config.Interval)
		require.Equal(t, SimulatorSummaryIntervalDefault, simulator.config.SummaryInterval)
		require.Equal(t, SimulatorTimeoutDefault, simulator.client.Timeout)
		require.Equal(t, "http://127.0.0.1:5000/rides", simulator.ridesURL)
	})

	t.Run("RunOnceSendsARideRequest", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Email: "rider@example.com"})

		// Half the requests, at random, ask for a failure: in 64 requests,
		// both kinds show up but with probability 2^-63.
		const numRequests = 64
		var results []*simulatorResult
		for range numRequests {
			res, err := simulator.runOnce(ctx)
			require.NoError(t, err)
			results = append(results, res)
		}

		requests := bundle.api.Requests()
		require.Len(t, requests, numRequests)
		keys := make(map[string]bool)
		numRaiseError := 0
		for i, req := range requests {
			require.Equal(t, http.MethodPost, req.Method)
			require.Equal(t, "/rides", req.Path)
			require.Equal(t, "rider@example.com", req.Authorization)
			require.Equal(t, "application/x-www-form-urlencoded", req.ContentType)
			require.Len(t, req.IdempotencyKey, 36) // a UUID, as the original
			keys[req.IdempotencyKey] = true

			want := map[string][]string{
				"origin_lat": {"0.0"}, "origin_lon": {"0.0"}, "target_lat": {"0.0"}, "target_lon": {"0.0"},
			}
			if results[i].RaiseError {
				want["raise_error"] = []string{"true"}
				require.Equal(t, http.StatusInternalServerError, results[i].Status)
				numRaiseError++
			} else {
				require.Equal(t, http.StatusCreated, results[i].Status)
				require.Equal(t, `{"message":"Payment accepted. Your pilot is on their way!"}`, results[i].Body)
			}
			require.Equal(t, want, req.Form)
		}
		require.Len(t, keys, numRequests)
		require.NotZero(t, numRaiseError)
		require.NotEqual(t, numRequests, numRaiseError)

		require.Equal(t, &simulatorSummary{
			ByStatus: map[int]int{http.StatusCreated: numRequests - numRaiseError, http.StatusInternalServerError: numRaiseError},
			Sent:     numRequests,
		}, simulator.summary())
		require.Contains(t, bundle.logs.String(), `level=INFO msg="simulator: response" status=201 body="{\"message\":\"Payment accepted. Your pilot is on their way!\"}"`)
	})

	t.Run("RunOnceCountsAnErrorWithoutAnswer", func(t *testing.T) {
		t.Parallel()
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close() // nothing listens there any more
		var logs bytes.Buffer
		simulator := NewSimulator(&SimulatorConfig{APIURL: server.URL}, slog.New(slog.NewTextHandler(&logs, nil)))

		_, err := simulator.runOnce(ctx)
		require.Error(t, err)
		require.Equal(t, &simulatorSummary{ByStatus: map[int]int{}, Errors: 1, Sent: 1}, simulator.summary())
		require.Contains(t, logs.String(), `level=WARN msg="simulator: request failed"`)
	})

	t.Run("StartSendsRequestsThenStops", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Concurrency: 3, Interval: time.Millisecond, Requests: 10})

		simulator.Start(ctx)

		requests := bundle.api.Requests()
		require.Len(t, requests, 10)
		keys := make(map[string]bool)
		numRaiseError := 0
		for _, req := range requests {
			keys[req.IdempotencyKey] = true
			if req.Form["raise_error"] != nil {
				numRaiseError++
			}
		}
		require.Len(t, keys, 10)

		summary := simulator.summary()
		require.Equal(t, &simulatorSummary{
			ByStatus: map[int]int{http.StatusCreated: 10 - numRaiseError, http.StatusInternalServerError: numRaiseError},
			Sent:     10,
		}, summary)
		// Start's last line is the summary, statuses that never came left
		// out.
		lines := bytes.Split(bytes.TrimSpace(bundle.logs.Bytes()), []byte("\n"))
		last := string(lines[len(lines)-1])
		require.Contains(t, last, `level=INFO msg="simulator: summary" sent=10`)
		require.Contains(t, last, "errors=0")
		if numRaiseError > 0 {
			require.Contains(t, last, "status_500=")
		}
	})

	t.Run("StartAtARate", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Concurrency: 2, Rate: 1000, Requests: 5})

		simulator.Start(ctx)

		require.Len(t, bundle.api.Requests(), 5)
		require.Equal(t, 5, simulator.summary().Sent)
	})

	t.Run("StartStopsWhenCancelled", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Interval: time.Millisecond})
		bundle.api.received = make(chan struct{}, 1000)
		startCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			simulator.Start(startCtx)
		}()

		enqueuerWaitFor(t, bundle.api.received)
		cancel()
		enqueuerWaitFor(t, stopped)

		// Every request sent got its answer: none was cut off.
		summary := simulator.summary()
		require.Positive(t, summary.Sent)
		require.Zero(t, summary.Errors)
		require.Len(t, bundle.api.Requests(), summary.Sent)
	})

	t.Run("StartStopsAfterDuration", func(t *testing.T) {
		t.Parallel()
		simulator, _ := setup(t, &SimulatorConfig{Duration: 10 * time.Millisecond, Interval: time.Millisecond})

		simulator.Start(ctx) // returns: the test would time out otherwise
	})
}
