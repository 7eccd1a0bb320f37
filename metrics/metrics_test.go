package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHandlerServesEveryMetric(t *testing.T) {
	t.Parallel()
	m := New()
	m.ObserveRequest("/rides", http.MethodPost, http.StatusCreated, 3*time.Millisecond, true)
	m.ObserveRequest("/rides", "BREW", http.StatusMethodNotAllowed, time.Millisecond, false)
	m.ObservePhase("ride_created", 2*time.Millisecond)
	m.TxRetried(errors.New("serialization failure"))
	m.CompleterOutcome("finished")
	m.JobsEnqueued(3)
	m.KeysReaped(4, 1)
	m.ReceiptSent()
	m.ObserveShed(false)
	m.ObserveShed(false)
	m.ObserveShed(true)

	recorder := httptest.NewRecorder()
	m.Handler().ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, recorder.Code)
	require.Contains(t, recorder.Header().Get("Content-Type"), "text/plain")
	body, err := io.ReadAll(recorder.Body)
	require.NoError(t, err)
	for _, line := range []string{
		`rocketrides_api_requests_total{route="/rides",method="POST",status="201"} 1`,
		`rocketrides_api_requests_total{route="/rides",method="other",status="405"} 1`,
		`rocketrides_api_request_duration_seconds_bucket{route="/rides",method="POST",le="0.004"} 1`,
		`rocketrides_api_request_duration_seconds_count{route="/rides",method="POST"} 1`,
		`rocketrides_api_replays_total 1`,
		`rocketrides_phase_duration_seconds_bucket{recovery_point="ride_created",le="0.002"} 1`,
		`rocketrides_tx_retries_total 1`,
		`rocketrides_completer_keys_total{outcome="finished"} 1`,
		`rocketrides_enqueuer_jobs_total 3`,
		`rocketrides_reaper_keys_total{finished="true"} 4`,
		`rocketrides_reaper_keys_total{finished="false"} 1`,
		`rocketrides_receipts_sent_total 1`,
		`rocketrides_api_shed_total{bound="in_flight"} 2`,
		`rocketrides_api_shed_total{bound="working"} 1`,
	} {
		require.Contains(t, string(body), line+"\n")
	}
	require.Regexp(t, `(?m)^go_goroutines \d+$`, string(body))
	require.Regexp(t, `(?m)^process_resident_memory_bytes \d+$`, string(body))
}
