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
// far more than it admits, and its memory before, at the peak and after.
//
// Overload's clients wait as a 503's Retry-After says before their next
// request, as the API asks its clients to; Hammer's, reported beside it
// and not judged, send their next request at once.
type OverloadResult struct {
	Base     OverloadLoad `json:"base"`
	Overload OverloadLoad `json:"overload"`
	Hammer   OverloadLoad `json:"hammer"`

	// IdleRSSMB is the API's RSS before any load, PeakRSSMB the most
	// during the overload, SettledRSSMB SettleSeconds after it stopped.
	IdleRSSMB     float64 `json:"idle_rss_mb"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	SettledRSSMB  float64 `json:"settled_rss_mb"`
	SettleSeconds float64 `json:"settle_seconds"`
}

// OverloadLoad is one load of the overload scenario.
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
}

// Statuses of the overload scenario's answers, beside the HTTP codes, and
// the problem type of a shed request.
const (
	statusShed        = "503"
	statusOther503    = "503-other"
	problemOverloaded = "overloaded"
)

// runOverload starts the API with its defaults, reads its idle RSS, runs
// new keys at config.overloadBaseClients, then at config.overloadClients
// that honor Retry-After, then as many that do not, and reads its RSS
// config.overloadSettle after the load stops.
func (b *bench) runOverload(ctx context.Context) (*OverloadResult, error) {
	if err := truncate(ctx, b.pool); err != nil {
		return nil, err
	}
	api, err := b.startAPI(ctx, "api-overload", b.config.databaseURL, isolationReadCommitted, false)
	if err != nil {
		return nil, err
	}
	defer api.stop()
	idle, err := api.usage()
	if err != nil {
		return nil, err
	}
	result := &OverloadResult{IdleRSSMB: mb(idle.rssBytes), SettleSeconds: b.config.overloadSettle.Seconds()}

	var peak int64
	for _, load := range []struct {
		result  *OverloadLoad
		clients int
		warm    bool
		honor   bool
	}{
		{&result.Base, b.config.overloadBaseClients, true, true},
		{&result.Overload, b.config.overloadClients, false, true},
		{&result.Hammer, b.config.overloadClients, false, false},
	} {
		measured, loadPeak, err := b.overloadLoad(ctx, api, load.clients, load.warm, load.honor)
		if err != nil {
			return nil, err
		}
		*load.result, peak = *measured, max(peak, loadPeak)
	}
	result.PeakRSSMB = mb(peak)

	slog.InfoContext(ctx, "bench: waiting for the API's memory to settle", slog.Duration("wait", b.config.overloadSettle))
	select {
	case <-time.After(b.config.overloadSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	settled, err := api.usage()
	if err != nil {
		return nil, err
	}
	result.SettledRSSMB = mb(settled.rssBytes)
	return result, nil
}

// overloadLoad runs new keys from clients clients for
// config.overloadDuration, after a warm-up if warm, and returns what they
// got and the API's peak RSS meanwhile. If honor is set, a client that was
// shed waits as Retry-After says (until the run's end at most) before its
// next request. The clients' connections are closed after.
func (b *bench) overloadLoad(ctx context.Context, api *server, clients int, warm, honor bool) (*OverloadLoad, int64, error) {
	client := newHTTPClient(clients)
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
			} else if honor {
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
	if warm {
		deadline.Store(time.Now().Add(b.config.warmup).UnixNano())
		RunLoad(ctx, LoadConfig{Concurrency: clients, Duration: b.config.warmup}, op)
		withoutRetryAfter.Store(0)
	}
	before, err := api.usage()
	if err != nil {
		return nil, 0, err
	}
	sampler := sampleRSS(api)
	deadline.Store(time.Now().Add(b.config.overloadDuration).UnixNano())
	stats := RunLoad(ctx, LoadConfig{Concurrency: clients, Duration: b.config.overloadDuration}, op)
	peak := sampler.stop()
	after, err := api.usage()
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	logFirstError(ctx, scenarioOverload, clients, sideAPI, stats)
	load := &OverloadLoad{
		Clients:         clients,
		HonorRetryAfter: honor,
		GoodputRPS:      round(float64(stats.StatusCounts["201"]) / stats.Elapsed.Seconds()),
		AdmittedP99MS:   ms(stats.StatusPercentile("201", 0.99)),
		Shed:            stats.StatusCounts[statusShed],
		ShedP99MS:       ms(stats.StatusPercentile(statusShed, 0.99)),
		StatusCounts:    stats.StatusCounts,
	}
	load.ShedWithoutRetryAfter = int(withoutRetryAfter.Load())
	if n := stats.Requests(); n > 0 {
		load.APICPUMSPerRequest = ms((after.cpu - before.cpu) / time.Duration(n))
	}
	return load, peak, nil
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
