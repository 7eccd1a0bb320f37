package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/problem"
)

// OverloadResult is the overload scenario (issue 13, goal 4): the API with
// its default admission settings, new keys from a few clients, then from
// far more than it admits, and its memory at rest before, at the peak and
// after.
//
// Overload's clients wait as a 503's Retry-After says before their next
// request, as the API asks its clients to; Hammer's, reported beside it
// and not judged, send their next request at once. Base and Overload
// alternate in rounds (-overload-rounds), as the sides of a cell do, so
// that noise on the machine hits them alike.
type OverloadResult struct {
	Base     OverloadLoad `json:"base"`
	Overload OverloadLoad `json:"overload"`
	Hammer   OverloadLoad `json:"hammer"`

	// ColdRSSMB is the API's RSS before any request. IdleRSSMB is its RSS
	// at rest after the few clients' load, SettledRSSMB at rest after the
	// overload, each SettleSeconds after its load stopped: what an overload
	// leaves behind is SettledRSSMB over IdleRSSMB, since a server that has
	// served at all holds its pools' connections and its caches (the
	// difference between ColdRSSMB and IdleRSSMB). PeakRSSMB is the most
	// during the overload.
	ColdRSSMB     float64 `json:"cold_rss_mb"`
	IdleRSSMB     float64 `json:"idle_rss_mb"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	SettledRSSMB  float64 `json:"settled_rss_mb"`
	SettleSeconds float64 `json:"settle_seconds"`
}

// OverloadLoad is one load of the overload scenario, over all its rounds.
type OverloadLoad struct {
	Clients int `json:"clients"`

	// HonorRetryAfter is whether the clients waited as Retry-After said.
	HonorRetryAfter bool `json:"honor_retry_after"`

	// GoodputRPS counts the 201s per second; AdmittedP99MS is the p99 of
	// the 201s.
	GoodputRPS    float64 `json:"goodput_rps"`
	AdmittedP99MS float64 `json:"admitted_p99_ms"`

	// Shed counts the 503 overloaded answers, ShedP99MS is their p99, and
	// ShedWithoutRetryAfter counts those that came without Retry-After.
	Shed                  int     `json:"shed"`
	ShedP99MS             float64 `json:"shed_p99_ms"`
	ShedWithoutRetryAfter int     `json:"shed_without_retry_after"`

	// StatusCounts counts the answers by status ("503" for shedding,
	// "503-other" for any other 503).
	StatusCounts map[string]int `json:"status_counts"`

	APICPUMSPerRequest float64 `json:"api_cpu_ms_per_request"`

	// BenchProcessCores, APICores, PostgresCores and MachineCores are the
	// cores kept busy by the bench's process (its clients, the Stripe
	// fake), the API, the database's backends and the whole machine.
	BenchProcessCores float64 `json:"bench_process_cores"`
	APICores          float64 `json:"api_cores"`
	PostgresCores     float64 `json:"postgres_cores"`
	MachineCores      float64 `json:"machine_cores"`
}

// Statuses of the overload scenario's answers, beside the HTTP codes, and
// the problem type of a shed request.
const (
	statusShed        = "503"
	statusOther503    = "503-other"
	problemOverloaded = "overloaded"
)

// runOverload starts the API with its defaults and reads its RSS before any
// request; runs new keys at config.overloadBaseClients and reads its RSS at
// rest config.overloadSettle later (its idle RSS); then alternates,
// config.overloadRounds times, new keys at config.overloadBaseClients and at
// config.overloadClients that honor Retry-After; then runs as many clients
// that do not, and reads its RSS at rest config.overloadSettle after the
// load stops.
func (b *bench) runOverload(ctx context.Context) (*OverloadResult, error) {
	if err := truncate(ctx, b.pool); err != nil {
		return nil, err
	}
	api, err := b.startAPI(ctx, "api-overload", b.config.databaseURL, isolationReadCommitted, false)
	if err != nil {
		return nil, err
	}
	defer api.stop()
	cold, err := api.usage()
	if err != nil {
		return nil, err
	}
	result := &OverloadResult{ColdRSSMB: mb(cold.rssBytes), SettleSeconds: b.config.overloadSettle.Seconds()}

	served := &overloadRun{clients: b.config.overloadBaseClients, honor: true, stats: newStats()}
	if err := b.overloadLoad(ctx, api, served); err != nil {
		return nil, err
	}
	idle, err := b.settledRSS(ctx, api)
	if err != nil {
		return nil, err
	}
	result.IdleRSSMB = mb(idle)

	base := &overloadRun{clients: b.config.overloadBaseClients, honor: true, stats: newStats()}
	overload := &overloadRun{clients: b.config.overloadClients, honor: true, stats: newStats()}
	hammer := &overloadRun{clients: b.config.overloadClients, stats: newStats()}
	for range b.config.overloadRounds {
		if err := b.overloadLoad(ctx, api, base); err != nil {
			return nil, err
		}
		if err := b.overloadLoad(ctx, api, overload); err != nil {
			return nil, err
		}
	}
	if err := b.overloadLoad(ctx, api, hammer); err != nil {
		return nil, err
	}
	result.Base, result.Overload, result.Hammer = base.load(), overload.load(), hammer.load()
	result.PeakRSSMB = mb(max(base.peakRSS, overload.peakRSS, hammer.peakRSS))
	settled, err := b.settledRSS(ctx, api)
	if err != nil {
		return nil, err
	}
	result.SettledRSSMB = mb(settled)
	return result, nil
}

// settledRSS waits config.overloadSettle and returns the API's RSS.
func (b *bench) settledRSS(ctx context.Context, api *server) (int64, error) {
	slog.InfoContext(ctx, "bench: waiting for the API's memory to settle", slog.Duration("wait", b.config.overloadSettle))
	select {
	case <-time.After(b.config.overloadSettle):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	usage, err := api.usage()
	if err != nil {
		return 0, err
	}
	return usage.rssBytes, nil
}

// overloadRun adds up the rounds of one load of the overload scenario.
type overloadRun struct {
	clients int
	honor   bool // whether a shed client waits as Retry-After says

	stats             *Stats
	cpu               time.Duration // the API's
	usage             cpuUsage      // the bench's, the database's, the machine's
	withoutRetryAfter int
	peakRSS           int64
}

// load is what the run's rounds measured.
func (r *overloadRun) load() OverloadLoad {
	load := OverloadLoad{
		Clients:               r.clients,
		HonorRetryAfter:       r.honor,
		AdmittedP99MS:         ms(r.stats.StatusPercentile("201", 0.99)),
		Shed:                  r.stats.StatusCounts[statusShed],
		ShedP99MS:             ms(r.stats.StatusPercentile(statusShed, 0.99)),
		ShedWithoutRetryAfter: r.withoutRetryAfter,
		StatusCounts:          r.stats.StatusCounts,
	}
	load.GoodputRPS = goodputRPS(r.stats)
	if n := r.stats.Requests(); n > 0 {
		load.APICPUMSPerRequest = ms(r.cpu / time.Duration(n))
	}
	load.BenchProcessCores = round(r.usage.cores(r.usage.process))
	load.APICores = round(r.usage.cores(r.cpu))
	load.PostgresCores = round(r.usage.cores(r.usage.postgres))
	load.MachineCores = round(r.usage.cores(r.usage.machine))
	return load
}

// goodputRPS is the 201s per second of stats (0 if it took no time).
func goodputRPS(stats *Stats) float64 {
	if stats.Elapsed <= 0 {
		return 0
	}
	return round(float64(stats.StatusCounts["201"]) / stats.Elapsed.Seconds())
}

// overloadLoad runs new keys from run.clients clients for
// config.overloadDuration, after a warm-up of config.warmup, and adds what
// they got and the API's CPU and peak RSS meanwhile to run. The warm-up
// connects the clients, so that each load is measured in its steady state:
// a thousand clients connecting at once take the two cores this machine
// shares between the bench and the API. If run.honor is set, a client that
// was shed waits as Retry-After says (until the run's end at most) before
// its next request. The clients' connections are closed after.
func (b *bench) overloadLoad(ctx context.Context, api *server, run *overloadRun) error {
	client := newHTTPClient(run.clients)
	defer client.CloseIdleConnections()
	var (
		withoutRetryAfter atomic.Int64
		deadline          atomic.Int64 // of the run under way, in Unix nanoseconds
	)
	op := func(ctx context.Context, worker, _ int, rec *Recorder) {
		start := time.Now()
		ans, err := postRide(ctx, client, api.url, b.stripe.user(worker).email, uuid.NewString())
		switch {
		case err != nil:
			rec.Record(start, "transport_error", err)
		case ans.status == http.StatusCreated:
			rec.Record(start, strconv.Itoa(ans.status), nil)
		case ans.status == http.StatusServiceUnavailable && problemType(ans.body) == problemOverloaded:
			rec.Record(start, statusShed, nil)
			seconds, err := strconv.Atoi(ans.retryAfter)
			if err != nil {
				withoutRetryAfter.Add(1)
			} else if run.honor {
				wait := min(time.Duration(seconds)*time.Second, time.Until(time.Unix(0, deadline.Load())))
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		case ans.status == http.StatusServiceUnavailable:
			rec.Record(start, statusOther503, fmt.Errorf("503: %.300s", ans.body))
		default:
			rec.Record(start, strconv.Itoa(ans.status), fmt.Errorf("%d: %.300s", ans.status, ans.body))
		}
	}
	deadline.Store(time.Now().Add(b.config.warmup).UnixNano())
	RunLoad(ctx, LoadConfig{Concurrency: run.clients, Duration: b.config.warmup}, op)
	withoutRetryAfter.Store(0)
	before, err := api.usage()
	if err != nil {
		return err
	}
	cpuBefore, err := readCPU(ctx, b.pool)
	if err != nil {
		return err
	}
	sampler := sampleRSS(api)
	deadline.Store(time.Now().Add(b.config.overloadDuration).UnixNano())
	stats := RunLoad(ctx, LoadConfig{Concurrency: run.clients, Duration: b.config.overloadDuration}, op)
	peak := sampler.stop()
	after, err := api.usage()
	if err != nil {
		return err
	}
	cpuAfter, err := readCPU(ctx, b.pool)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	logFirstError(ctx, scenarioOverload, run.clients, sideAPI, stats)
	slog.InfoContext(ctx, "bench: overload load done", slog.Int("clients", run.clients), slog.Bool("honor_retry_after", run.honor),
		slog.Float64("goodput_rps", goodputRPS(stats)), slog.Int("shed", stats.StatusCounts[statusShed]))
	run.stats.add(stats)
	run.cpu += after.cpu - before.cpu
	run.usage.add(cpuAfter.since(cpuBefore))
	run.withoutRetryAfter += int(withoutRetryAfter.Load())
	run.peakRSS = max(run.peakRSS, peak)
	return nil
}

// problemType is the kind of a problem+json body (its type after
// problem.TypeBase), or "".
func problemType(body []byte) string {
	var details struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &details) != nil {
		return ""
	}
	kind, ok := strings.CutPrefix(details.Type, problem.TypeBase)
	if !ok {
		return ""
	}
	return kind
}

// mb is bytes in MiB, to two decimals.
func mb(bytes int64) float64 {
	return round(float64(bytes) / (1 << 20))
}
