// Package metrics holds the metrics of every rocket-rides process, in a set
// of their own, served at GET /metrics in Prometheus's text format, with the
// Go runtime's and the process's own.
//
// It is built on github.com/VictoriaMetrics/metrics rather than Prometheus's
// client_golang: the same exposition format for a fraction of the compile
// (client_golang brings protobuf), which a new user waits through on the
// first `go tool task run`.
package metrics

import (
	"fmt"
	"net/http"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// Metrics are the metrics of one process. A process registers all of them,
// and those of the parts it does not run stay at zero.
type Metrics struct {
	set *vm.Set

	// Upper bounds of the histograms' buckets, in seconds: 0.5 ms doubling
	// to about 4 s (phases) and 16 s (requests).
	phaseBuckets   []float64
	requestBuckets []float64

	jobsEnqueued *vm.Counter
	receiptsSent *vm.Counter
	replays      *vm.Counter
	shedInFlight *vm.Counter
	shedWorking  *vm.Counter
	txRetries    *vm.Counter
}

// New returns a process's metrics.
func New() *Metrics {
	set := vm.NewSet()
	return &Metrics{
		set:            set,
		phaseBuckets:   exponentialBuckets(0.0005, 2, 14),
		requestBuckets: exponentialBuckets(0.0005, 2, 16),
		jobsEnqueued:   set.NewCounter("rocketrides_enqueuer_jobs_total"),
		receiptsSent:   set.NewCounter("rocketrides_receipts_sent_total"),
		replays:        set.NewCounter("rocketrides_api_replays_total"),
		shedInFlight:   set.NewCounter(`rocketrides_api_shed_total{bound="in_flight"}`),
		shedWorking:    set.NewCounter(`rocketrides_api_shed_total{bound="working"}`),
		txRetries:      set.NewCounter("rocketrides_tx_retries_total"),
	}
}

// Handler serves the metrics in Prometheus's text format, followed by the
// Go runtime's (go_*) and the process's (process_*).
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.set.WritePrometheus(w)
		vm.WriteProcessMetrics(w)
	})
}

// ObserveShed records one request turned away by the API's admission in
// rocketrides_api_shed_total, by the bound it found full: "in_flight" (at
// once, before any work) or "working" (after it read its key and waited
// for a place).
func (m *Metrics) ObserveShed(working bool) {
	if working {
		m.shedWorking.Inc()
		return
	}
	m.shedInFlight.Inc()
}

// ObserveRequest records one API request: rocketrides_api_requests_total
// by route, method and status (499: a client that hung up before its
// answer), rocketrides_api_request_duration_seconds by route and method, and
// rocketrides_api_replays_total.
func (m *Metrics) ObserveRequest(route, method string, status int, elapsed time.Duration, replayed bool) {
	method = knownMethod(method)
	m.set.GetOrCreateCounter(fmt.Sprintf(`rocketrides_api_requests_total{route=%q,method=%q,status="%d"}`, route, method, status)).Inc()
	m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`rocketrides_api_request_duration_seconds{route=%q,method=%q}`, route, method),
		m.requestBuckets).Update(elapsed.Seconds())
	if replayed {
		m.replays.Inc()
	}
}

// ObservePhase records one atomic phase that committed, in
// rocketrides_phase_duration_seconds by the recovery point it reached.
func (m *Metrics) ObservePhase(recoveryPoint string, elapsed time.Duration) {
	m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`rocketrides_phase_duration_seconds{recovery_point=%q}`, recoveryPoint),
		m.phaseBuckets).Update(elapsed.Seconds())
}

// TxRetried records one phase transaction retried after a serialization
// failure or a deadlock.
func (m *Metrics) TxRetried(error) { m.txRetries.Inc() }

// CompleterOutcome records one key the completer drove, in
// rocketrides_completer_keys_total by outcome (finished, unfinished,
// conflict, error, skipped_unknown_workflow).
func (m *Metrics) CompleterOutcome(outcome string) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`rocketrides_completer_keys_total{outcome=%q}`, outcome)).Inc()
}

// JobsEnqueued records staged jobs moved into River.
func (m *Metrics) JobsEnqueued(n int) { m.jobsEnqueued.Add(n) }

// KeysReaped records keys deleted by the reaper, in
// rocketrides_reaper_keys_total by whether they had finished.
func (m *Metrics) KeysReaped(finished, unfinished int64) {
	m.set.GetOrCreateCounter(`rocketrides_reaper_keys_total{finished="true"}`).AddInt64(finished)
	m.set.GetOrCreateCounter(`rocketrides_reaper_keys_total{finished="false"}`).AddInt64(unfinished)
}

// ReceiptSent records one receipt sent.
func (m *Metrics) ReceiptSent() { m.receiptsSent.Inc() }

// knownMethod is method if it is one of HTTP's, or "other": a label value
// never comes from what a client may invent.
func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// exponentialBuckets returns count upper bounds, the first start, each
// factor times the one before.
func exponentialBuckets(start, factor float64, count int) []float64 {
	buckets := make([]float64, count)
	for i := range buckets {
		buckets[i] = start
		start *= factor
	}
	return buckets
}
