package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/problem"
)

// simulatorRequest is what the test API received in one request.
type simulatorRequest struct {
	At             time.Time
	Authorization  string
	ContentType    string
	Form           map[string][]string
	IdempotencyKey string
	Method         string
	Path           string
}

// simulatorTestAPI is an API that records its requests and answers 500 (an
// internal problem) to those with raise_error=true, 201 to the others.
type simulatorTestAPI struct {
	// received, if not nil, gets a signal for each request.
	received chan struct{}

	// rides makes each 201 name a new ride, and each cancel answer 200.
	rides bool

	mu       sync.Mutex
	lastRide int64
	requests []simulatorRequest
}

func (a *simulatorTestAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.requests = append(a.requests, simulatorRequest{
		At:             time.Now(),
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
	switch {
	case r.PostForm.Get("raise_error") == "true":
		w.Header().Set("Content-Type", problem.ContentType)
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(problem.New(http.StatusInternalServerError, "internal", "simulated failure"))
	case a.rides && strings.HasSuffix(r.URL.Path, "/cancel"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/rides/"), "/cancel")
		_, _ = w.Write([]byte(`{"message":"Ride cancelled.","ride":{"id":` + id + `,"status":"cancelled","stripe_refund_id":"re_` + id + `"}}`))
	case a.rides:
		a.mu.Lock()
		a.lastRide++
		id := a.lastRide
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"message":"Payment accepted. Your pilot is on their way!","ride":{"id":%d}}`+"\n", id)
	default:
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"message":"Payment accepted. Your pilot is on their way!"}` + "\n"))
	}
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

	newClient := func(t *testing.T, baseURL string) *apiclient.Client {
		t.Helper()
		client, err := apiclient.NewClient(baseURL, nil)
		require.NoError(t, err)
		return client
	}

	setupAPI := func(t *testing.T, api *simulatorTestAPI, config *SimulatorConfig) (*Simulator, *testBundle) {
		t.Helper()
		bundle := &testBundle{api: api, logs: &bytes.Buffer{}}
		server := httptest.NewServer(bundle.api)
		t.Cleanup(server.Close)
		if config == nil {
			config = &SimulatorConfig{}
		}
		config.Logger = slog.New(slog.NewTextHandler(bundle.logs, nil))
		simulator, err := NewSimulator(newClient(t, server.URL), config)
		require.NoError(t, err)
		return simulator, bundle
	}

	// setup returns a simulator of an API whose 201s name no ride: nothing
	// to cancel.
	setup := func(t *testing.T, config *SimulatorConfig) (*Simulator, *testBundle) {
		t.Helper()
		return setupAPI(t, &simulatorTestAPI{received: make(chan struct{}, 1000)}, config)
	}

	// logLines returns the lines the simulator logged, after it stopped.
	logLines := func(bundle *testBundle) []string {
		return strings.Split(strings.TrimSpace(bundle.logs.String()), "\n")
	}

	// waitRequests waits for the test API to receive n more requests.
	waitRequests := func(t *testing.T, bundle *testBundle, n int) {
		t.Helper()
		for range n {
			enqueuerWaitFor(t, bundle.api.received)
		}
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		simulator, err := NewSimulator(newClient(t, "http://127.0.0.1:5000"), nil)
		require.NoError(t, err)
		require.Equal(t, SimulatorCancelShareDefault, simulator.config.CancelShare)
		require.Equal(t, SimulatorEmailDefault, simulator.config.Email)
		require.Equal(t, SimulatorIntervalDefault, simulator.config.Interval)
		require.Equal(t, SimulatorSummaryIntervalDefault, simulator.config.SummaryInterval)
		require.NotNil(t, simulator.config.Logger)
		require.Zero(t, simulator.config.Rate)
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		client := newClient(t, "http://127.0.0.1:5000")
		for config, want := range map[*SimulatorConfig]string{
			{CancelShare: 1.5}:              "simulator: CancelShare must not be more than 1, got 1.5",
			{Interval: -time.Second}:        "simulator: Interval must not be negative, got -1s",
			{Rate: -1}:                      "simulator: Rate must not be negative, got -1",
			{SummaryInterval: -time.Second}: "simulator: SummaryInterval must not be negative, got -1s",
		} {
			_, err := NewSimulator(client, config)
			require.EqualError(t, err, want)
		}
		_, err := NewSimulator(nil, nil)
		require.EqualError(t, err, "simulator: client must not be nil")
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
				require.Equal(t, "internal", results[i].ProblemType)
				numRaiseError++
			} else {
				require.Equal(t, http.StatusCreated, results[i].Status)
				require.Equal(t, `{"message":"Payment accepted. Your pilot is on their way!"}`, strings.TrimSpace(string(results[i].Body)))
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

		// One short line per request: the status, the key's first
		// characters, the latency and the problem; never the body.
		lines := logLines(bundle)
		require.Len(t, lines, numRequests)
		for i, line := range lines {
			require.Less(t, len(line), 160, "line: %s", line)
			require.NotContains(t, line, "Payment accepted")
			require.Contains(t, line, " key="+requests[i].IdempotencyKey[:8]+" ")
			require.Contains(t, line, " latency=")
			if results[i].RaiseError {
				require.Contains(t, line, `level=INFO msg="simulator: response" status=500`)
				require.Contains(t, line, "raise_error=true")
				require.Contains(t, line, "problem=internal")
			} else {
				require.Contains(t, line, `level=INFO msg="simulator: response" status=201`)
				require.NotContains(t, line, "raise_error")
				require.NotContains(t, line, "problem=")
			}
		}
	})

	// With an API key, the requests send it as a Bearer credential, and
	// the start-up line says so without showing it.
	t.Run("APIKey", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{APIKey: "rr_7_secret", Email: "rider@example.com"})
		_, err := simulator.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, "Bearer rr_7_secret", bundle.api.Requests()[0].Authorization)

		require.NoError(t, simulator.Start(ctx))
		simulator.Stop()
		require.Contains(t, bundle.logs.String(), `email=rider@example.com auth=api_key `)
		require.NotContains(t, bundle.logs.String(), "secret")
	})

	// Every ride created is cancelled once, with a fresh key and no body;
	// a request that failed creates nothing to cancel.
	t.Run("RunOnceCancelsTheRidesItCreated", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setupAPI(t, &simulatorTestAPI{rides: true}, &SimulatorConfig{CancelShare: 1, Email: "rider@example.com"})

		const numRequests = 32
		numCreated := 0
		for range numRequests {
			res, err := simulator.runOnce(ctx)
			require.NoError(t, err)
			if res.RaiseError {
				require.Nil(t, res.Cancel)
				continue
			}
			numCreated++
			require.Equal(t, http.StatusOK, res.Cancel.Status)
			require.Equal(t, res.Ride.ID, res.Cancel.Ride.ID)
			require.Equal(t, "cancelled", res.Cancel.RideStatus)
		}
		require.NotZero(t, numCreated)

		requests := bundle.api.Requests()
		require.Len(t, requests, numRequests+numCreated)
		keys := make(map[string]bool)
		var cancels []simulatorRequest
		for i, req := range requests {
			keys[req.IdempotencyKey] = true
			if req.Path == "/rides" {
				continue
			}
			// Right after its ride's 201.
			require.Equal(t, "/rides", requests[i-1].Path)
			require.Empty(t, requests[i-1].Form["raise_error"])
			cancels = append(cancels, req)
			require.Equal(t, http.MethodPost, req.Method)
			require.Equal(t, "/rides/"+strconv.Itoa(len(cancels))+"/cancel", req.Path)
			require.Equal(t, "rider@example.com", req.Authorization)
			require.Empty(t, req.ContentType)
			require.Empty(t, req.Form)
			require.Len(t, req.IdempotencyKey, 36)
		}
		require.Len(t, cancels, numCreated)
		require.Len(t, keys, len(requests), "every request has a key of its own")

		summary := simulator.summary()
		require.Equal(t, numCreated, summary.Cancels)
		require.Equal(t, map[int]int{http.StatusOK: numCreated}, summary.CancelsByStatus)
		require.Zero(t, summary.CancelErrors)

		// One short line per cancel, after its ride's line.
		var cancelLines []string
		for _, line := range logLines(bundle) {
			require.Less(t, len(line), 160, "line: %s", line)
			if strings.Contains(line, "cancel response") {
				cancelLines = append(cancelLines, line)
			}
		}
		require.Len(t, cancelLines, numCreated)
		require.Contains(t, cancelLines[0], `level=INFO msg="simulator: cancel response" status=200 ride_id=1 key=`+cancels[0].IdempotencyKey[:8]+" latency=")

		simulator.logSummary(ctx)
		lines := logLines(bundle)
		require.Contains(t, lines[len(lines)-1], fmt.Sprintf(" cancels=%d cancel_200=%d cancel_errors=0", numCreated, numCreated))
	})

	t.Run("CancelShare", func(t *testing.T) {
		t.Parallel()
		count := func(t *testing.T, share float64, numRequests int) (created, cancelled int) {
			t.Helper()
			simulator, _ := setupAPI(t, &simulatorTestAPI{rides: true}, &SimulatorConfig{CancelShare: share})
			for range numRequests {
				res, err := simulator.runOnce(ctx)
				require.NoError(t, err)
				if res.Status == http.StatusCreated {
					created++
				}
				if res.Cancel != nil {
					cancelled++
				}
			}
			return created, cancelled
		}

		// None: a negative share.
		created, cancelled := count(t, -1, 32)
		require.NotZero(t, created)
		require.Zero(t, cancelled)

		// Some, not all: about a half of about 100 rides (neither none
		// nor all but with probability about 2^-99).
		created, cancelled = count(t, 0.5, 200)
		require.Positive(t, cancelled)
		require.Less(t, cancelled, created)
	})

	t.Run("CancelWithoutAnswerIsCounted", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setupAPI(t, &simulatorTestAPI{rides: true}, &SimulatorConfig{CancelShare: 1})
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close() // nothing listens there any more
		gone := newClient(t, server.URL)

		// The ride's 201 comes from the API; the cancel finds it gone.
		res, err := simulator.postRide(ctx)
		for err == nil && res.RaiseError {
			res, err = simulator.postRide(ctx)
		}
		require.NoError(t, err)
		simulator.client = gone
		require.Nil(t, simulator.cancelRide(ctx, res.Ride.ID))
		summary := simulator.summary()
		require.Equal(t, 1, summary.Cancels)
		require.Equal(t, 1, summary.CancelErrors)
		require.Nil(t, summary.CancelsByStatus)
		require.Contains(t, bundle.logs.String(), `level=WARN msg="simulator: no answer to cancel" ride_id=1`)
	})

	t.Run("RunOnceCountsAnErrorWithoutAnswer", func(t *testing.T) {
		t.Parallel()
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close() // nothing listens there any more
		var logs bytes.Buffer
		simulator, err := NewSimulator(newClient(t, server.URL), &SimulatorConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, err)

		_, err = simulator.runOnce(ctx)
		require.Error(t, err)
		require.Equal(t, &simulatorSummary{ByStatus: map[int]int{}, Errors: 1, Sent: 1}, simulator.summary())
		require.Contains(t, logs.String(), `level=WARN msg="simulator: no answer"`)
	})

	t.Run("StartSendsRequestsThenStops", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Interval: time.Millisecond})

		require.NoError(t, simulator.Start(ctx))
		waitRequests(t, bundle, 10)
		simulator.Stop()

		requests := bundle.api.Requests()
		require.GreaterOrEqual(t, len(requests), 10)
		keys := make(map[string]bool)
		numRaiseError := 0
		for _, req := range requests {
			keys[req.IdempotencyKey] = true
			if req.Form["raise_error"] != nil {
				numRaiseError++
			}
		}
		require.Len(t, keys, len(requests))

		// Every request sent got its answer: none was cut off.
		summary := simulator.summary()
		require.Equal(t, &simulatorSummary{
			ByStatus: map[int]int{http.StatusCreated: len(requests) - numRaiseError, http.StatusInternalServerError: numRaiseError},
			Sent:     len(requests),
		}, summary)
		// One line with the settings first; the last summary, statuses that
		// never came left out, then one line when stopped.
		lines := logLines(bundle)
		require.Equal(t, `level=INFO msg="simulator: started" api_url=`+simulator.client.BaseURL()+
			` email=user@example.com interval=1ms cancel_share=0.1 summary_interval=10s`, lines[0][strings.Index(lines[0], "level="):])
		last := lines[len(lines)-2]
		require.Contains(t, last, `level=INFO msg="simulator: summary" sent=`)
		require.Contains(t, last, "errors=0")
		if numRaiseError > 0 {
			require.Contains(t, last, "status_500=")
		}
		require.Contains(t, lines[len(lines)-1], `level=INFO msg="simulator: stopped"`)
	})

	t.Run("StartAtARate", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Interval: time.Hour, Rate: 50})

		require.NoError(t, simulator.Start(ctx))
		waitRequests(t, bundle, 5)
		simulator.Stop()

		// A request every 20ms, not the random pauses of up to an hour: the
		// first one arrives late, after its connection is made.
		requests := bundle.api.Requests()
		require.GreaterOrEqual(t, len(requests), 5)
		require.Equal(t, len(requests), simulator.summary().Sent)
		require.GreaterOrEqual(t, requests[4].At.Sub(requests[1].At), 3*20*time.Millisecond-5*time.Millisecond)
		require.Contains(t, bundle.logs.String(), `msg="simulator: started" api_url=`+simulator.client.BaseURL()+
			` email=user@example.com rate=50 cancel_share=0.1 summary_interval=10s`)
	})

	t.Run("StartStopsWhenCancelled", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Interval: time.Millisecond})
		startCtx, cancel := context.WithCancel(ctx)

		require.NoError(t, simulator.Start(startCtx))
		done := simulator.done
		waitRequests(t, bundle, 1)
		cancel()
		enqueuerWaitFor(t, done)

		// Every request sent got its answer: none was cut off.
		summary := simulator.summary()
		require.Positive(t, summary.Sent)
		require.Zero(t, summary.Errors)
		require.Len(t, bundle.api.Requests(), summary.Sent)
		simulator.Stop() // returns at once: it has stopped
	})

	t.Run("StartStopsWhenItsContextTimesOut", func(t *testing.T) {
		t.Parallel()
		simulator, _ := setup(t, &SimulatorConfig{Interval: time.Millisecond})
		startCtx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()

		require.NoError(t, simulator.Start(startCtx))
		enqueuerWaitFor(t, simulator.done) // closes: the test would time out otherwise
	})

	t.Run("StopWhenNotStartedAndStartTwice", func(t *testing.T) {
		t.Parallel()
		simulator, bundle := setup(t, &SimulatorConfig{Interval: time.Millisecond})
		simulator.Stop() // not started: nothing to do

		require.NoError(t, simulator.Start(ctx))
		require.NoError(t, simulator.Start(ctx)) // running: nothing to do
		waitRequests(t, bundle, 1)
		simulator.Stop()
		simulator.Stop()

		require.Equal(t, 1, strings.Count(bundle.logs.String(), `msg="simulator: started"`))
		require.Equal(t, 1, strings.Count(bundle.logs.String(), `msg="simulator: stopped"`))
	})
}
