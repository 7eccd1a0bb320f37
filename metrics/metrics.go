// Package metrics holds the Prometheus metrics of every rocket-rides process,
// in a registry of their own, served at GET /metrics.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the metrics of one process. A process registers all of them,
// and those of the parts it does not run stay at zero.
type Metrics struct {
	registry *prometheus.Registry

	completerOutcomes *prometheus.CounterVec
	jobsEnqueued      prometheus.Counter
	keysReaped        *prometheus.CounterVec
	phaseDuration     *prometheus.HistogramVec
	receiptsSent      prometheus.Counter
	replays           prometheus.Counter
	requestDuration   *prometheus.HistogramVec
	requests          *prometheus.CounterVec
	txRetries         prometheus.Counter
}

// New returns a process's metrics, registered with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		completerOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocketrides_completer_keys_total",
			Help: "Keys the completer drove, by outcome: finished, unfinished, conflict, error, skipped_unknown_workflow.",
		}, []string{"outcome"}),
		jobsEnqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocketrides_enqueuer_jobs_total",
			Help: "Staged jobs moved into River.",
		}),
		keysReaped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocketrides_reaper_keys_total",
			Help: "Idempotency keys deleted by the reaper, by whether they had finished.",
		}, []string{"finished"}),
		phaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rocketrides_phase_duration_seconds",
			Help:    "Duration of atomic phases, by the recovery point they reached.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"recovery_point"}),
		receiptsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocketrides_receipts_sent_total",
			Help: "Ride receipts sent.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocketrides_api_replays_total",
			Help: "Responses replayed from a finished idempotency key.",
		}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rocketrides_api_request_duration_seconds",
			Help:    "Duration of API requests, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "method"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocketrides_api_requests_total",
			Help: "API requests, by route, method and status; 499 is a client that hung up before its answer.",
		}, []string{"route", "method", "status"}),
		txRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocketrides_tx_retries_total",
			Help: "Phase transactions retried after a serialization failure or deadlock.",
		}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.completerOutcomes, m.jobsEnqueued, m.keysReaped, m.phaseDuration,
		m.receiptsSent, m.replays, m.requestDuration, m.requests, m.txRetries,
	)
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// ObserveRequest records one API request.
func (m *Metrics) ObserveRequest(route, method string, status int, elapsed time.Duration, replayed bool) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.requestDuration.WithLabelValues(route, method).Observe(elapsed.Seconds())
	if replayed {
		m.replays.Inc()
	}
}

// ObservePhase records one atomic phase that committed.
func (m *Metrics) ObservePhase(recoveryPoint string, elapsed time.Duration) {
	m.phaseDuration.WithLabelValues(recoveryPoint).Observe(elapsed.Seconds())
}

// TxRetried records one retried transaction.
func (m *Metrics) TxRetried(error) { m.txRetries.Inc() }

// CompleterOutcome records one key the completer drove.
func (m *Metrics) CompleterOutcome(outcome string) {
	m.completerOutcomes.WithLabelValues(outcome).Inc()
}

// JobsEnqueued records jobs moved into River.
func (m *Metrics) JobsEnqueued(n int) { m.jobsEnqueued.Add(float64(n)) }

// KeysReaped records keys deleted by the reaper.
func (m *Metrics) KeysReaped(finished, unfinished int64) {
	m.keysReaped.WithLabelValues("true").Add(float64(finished))
	m.keysReaped.WithLabelValues("false").Add(float64(unfinished))
}

// ReceiptSent records one receipt sent.
func (m *Metrics) ReceiptSent() { m.receiptsSent.Inc() }
