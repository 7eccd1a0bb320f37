package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is results.json: every cell, the overload scenario, and the
// targets as judged.
type Results struct {
	Cells    []*Row          `json:"cells"`
	Overload *OverloadResult `json:"overload,omitempty"`
	Targets  []*Target       `json:"targets"`
}

// Row is one scenario at one concurrency: the API's figures, the limit's
// and, where they ran, the peer's and the bare handler's.
type Row struct {
	Scenario    string `json:"scenario"`
	Concurrency int    `json:"concurrency"`

	// Isolation is the level of the transactions, API and limit alike.
	Isolation string `json:"isolation"`

	// PoolMaxConns is the size of the API's pool, the limit's and the
	// peer's.
	PoolMaxConns int `json:"pool_max_conns"`

	// APIRPS, LimitRPS and PeerRPS count the requests answered as
	// expected, per second; Ratio is APIRPS / LimitRPS.
	APIRPS   float64 `json:"api_rps"`
	LimitRPS float64 `json:"limit_rps"`
	PeerRPS  float64 `json:"peer_rps,omitempty"`
	Ratio    float64 `json:"ratio"`

	API   Figures  `json:"api"`
	Limit Figures  `json:"limit"`
	Peer  *Figures `json:"peer,omitempty"`

	// Bare is the limit's work behind a bare net/http handler (new keys
	// at read committed): the floor of the CPU per request of any handler
	// on net/http, pgx and a net/http client of Stripe.
	Bare *Figures `json:"bare,omitempty"`
}

// Figures are what one side measured in a cell.
type Figures struct {
	// Requests is how many requests were answered in the timed runs.
	Requests int     `json:"requests"`
	RPS      float64 `json:"rps"`
	P50MS    float64 `json:"p50_ms"`
	P90MS    float64 `json:"p90_ms"`
	P99MS    float64 `json:"p99_ms"`

	// Errors counts answers other than the scenario expects; FirstError
	// shows the first.
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`

	// StatusCounts counts answers by HTTP status ("ok" and "error" for
	// the limit of a scenario with no HTTP).
	StatusCounts map[string]int `json:"status_counts"`

	// RoundTripsPerRequest and TxPerRequest are what the calibration
	// through the proxy counted (see package roundtrips), over CalibrationRequests
	// requests.
	RoundTripsPerRequest float64 `json:"round_trips_per_request"`
	TxPerRequest         float64 `json:"tx_per_request"`
	CalibrationRequests  int     `json:"calibration_requests"`

	// ProcessCPUMSPerRequest is the CPU time of the side's own process
	// (the API's, the peer's) per request, and ProcessPeakRSSMB its most
	// resident memory; both zero for the limit, which runs in the bench.
	ProcessCPUMSPerRequest float64 `json:"process_cpu_ms_per_request"`
	ProcessPeakRSSMB       float64 `json:"process_peak_rss_mb"`

	// PostgresCPUMSPerRequest is the CPU time of the database's backends
	// per request.
	PostgresCPUMSPerRequest float64 `json:"postgres_cpu_ms_per_request"`

	// BenchProcessCores is how many cores the bench's process kept busy
	// (load generator, Stripe fake, and the limit on its side),
	// ProcessCores how many the side's own process did, PostgresCores how
	// many the database's backends did, and MachineCores how many were
	// busy on the whole machine, whatever ran there (other work shares
	// it).
	BenchProcessCores float64 `json:"bench_process_cores"`
	MachineCores      float64 `json:"machine_cores"`
	PostgresCores     float64 `json:"postgres_cores"`
	ProcessCores      float64 `json:"process_cores"`
}

// newRow puts together the figures of a cell.
func newRow(sc *scenario, concurrency, poolMaxConns int, measured map[string]*measurement) *Row {
	row := &Row{
		Scenario:     sc.name,
		Concurrency:  concurrency,
		Isolation:    sc.isolation,
		PoolMaxConns: poolMaxConns,
		API:          newFigures(measured[sideAPI]),
		Limit:        newFigures(measured[sideLimit]),
	}
	row.APIRPS, row.LimitRPS = row.API.RPS, row.Limit.RPS
	if m, ok := measured[sidePeer]; ok {
		peer := newFigures(m)
		row.Peer, row.PeerRPS = &peer, peer.RPS
	}
	if m, ok := measured[sideBare]; ok {
		bare := newFigures(m)
		row.Bare = &bare
	}
	if row.LimitRPS > 0 {
		row.Ratio = math.Round(row.APIRPS/row.LimitRPS*1000) / 1000
	}
	return row
}

func newFigures(m *measurement) Figures {
	figures := Figures{
		Requests:            m.stats.Requests(),
		RPS:                 round(m.stats.RPS()),
		P50MS:               ms(m.stats.Percentile(0.50)),
		P90MS:               ms(m.stats.Percentile(0.90)),
		P99MS:               ms(m.stats.Percentile(0.99)),
		Errors:              m.stats.Errors,
		StatusCounts:        m.stats.StatusCounts,
		CalibrationRequests: m.calibrationReqs,
		ProcessPeakRSSMB:    mb(m.processPeakRSS),
		BenchProcessCores:   round(m.cpu.cores(m.cpu.process)),
		MachineCores:        round(m.cpu.cores(m.cpu.machine)),
		PostgresCores:       round(m.cpu.cores(m.cpu.postgres)),
		ProcessCores:        round(m.cpu.cores(m.processCPU)),
	}
	if m.stats.FirstError != nil {
		figures.FirstError = m.stats.FirstError.Error()
	}
	if n := m.calibrationReqs; n > 0 {
		figures.RoundTripsPerRequest = round(float64(m.calibration.RoundTrips) / float64(n))
		figures.TxPerRequest = round(float64(m.calibration.Transactions) / float64(n))
	}
	if n := m.stats.Requests(); n > 0 {
		figures.ProcessCPUMSPerRequest = ms(m.processCPU / time.Duration(n))
		figures.PostgresCPUMSPerRequest = ms(m.cpu.postgres / time.Duration(n))
	}
	return figures
}

// writeTable writes the cells as a table, then the overload scenario.
func writeTable(w io.Writer, results *Results) error {
	if len(results.Cells) > 0 {
		if err := writeCells(w, results.Cells); err != nil {
			return err
		}
	}
	if o := results.Overload; o != nil {
		return writeOverload(w, o)
	}
	return nil
}

// writeCells writes the cells as a table.
func writeCells(w io.Writer, cells []*Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconc\tapi rps\tlimit rps\tratio\tpeer rps\tp50 ms api\tp99 ms api/lim/peer\t"+
		"trips/req api/lim/peer\ttx/req api/lim/peer\tprocess cpu ms/req api/lim/peer\tpg cpu ms/req api/lim/peer\t"+
		"errors api/lim/peer\tapi statuses\tcores bench+api+pg+others\t")
	for _, r := range cells {
		peer := Figures{}
		if r.Peer != nil {
			peer = *r.Peer
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%s\t%.2f\t%.1f/%.1f/%s\t%.2f/%.2f/%s\t%.2f/%.2f/%s\t%.3f/%s/%s\t%.3f/%.3f/%s\t%d/%d/%s\t%s\t%s\t\n",
			r.Scenario, r.Concurrency, r.APIRPS, r.LimitRPS, r.Ratio, peerValue(r, "%.0f", peer.RPS), r.API.P50MS,
			r.API.P99MS, r.Limit.P99MS, peerValue(r, "%.1f", peer.P99MS),
			r.API.RoundTripsPerRequest, r.Limit.RoundTripsPerRequest, peerValue(r, "%.2f", peer.RoundTripsPerRequest),
			r.API.TxPerRequest, r.Limit.TxPerRequest, peerValue(r, "%.2f", peer.TxPerRequest),
			r.API.ProcessCPUMSPerRequest, limitProcessCPU(r), peerValue(r, "%.3f", peer.ProcessCPUMSPerRequest),
			r.API.PostgresCPUMSPerRequest, r.Limit.PostgresCPUMSPerRequest, peerValue(r, "%.3f", peer.PostgresCPUMSPerRequest),
			r.API.Errors, r.Limit.Errors, peerValue(r, "%.0f", float64(peer.Errors)),
			statusSummary(r.API.StatusCounts), r.API.cores())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	_, err := fmt.Fprintln(w, "trips and tx: counted by the proxy in front of PostgreSQL during each side's calibration;"+
		"\nprocess cpu: the side's own process (the API's, the replays' bare handler's, the peer's) per request;"+
		"\ncores: the bench's process (load generator, Stripe fake) + the API's process + the database's backends + everything else on the machine;"+
		"\na cell where everything else took a good share of the 2 cores measured the neighbours as much as the API.")
	if err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	return writeBare(w, cells)
}

// writeBare writes the bare handler's figures, beside the API's, for the
// cells where it ran.
func writeBare(w io.Writer, cells []*Row) error {
	header := "\nthe limit's new keys behind a bare net/http handler (the CPU floor of net/http, pgx and a net/http client of Stripe):\n"
	for _, r := range cells {
		if r.Bare == nil {
			continue
		}
		_, err := fmt.Fprintf(w, "%s  c=%d: %.0f rps, p99 %.1f ms, %.2f trips/req, process cpu %.3f ms/req (API %.3f), pg cpu %.3f ms/req, errors %d\n",
			header, r.Concurrency, r.Bare.RPS, r.Bare.P99MS, r.Bare.RoundTripsPerRequest, r.Bare.ProcessCPUMSPerRequest,
			r.API.ProcessCPUMSPerRequest, r.Bare.PostgresCPUMSPerRequest, r.Bare.Errors)
		if err != nil {
			return fmt.Errorf("writing table: %w", err)
		}
		header = ""
	}
	return nil
}

// writeOverload writes the overload scenario.
func writeOverload(w io.Writer, o *OverloadResult) error {
	if _, err := fmt.Fprintln(w, "\noverload, the API with its default admission settings, new keys:"); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	for _, load := range []OverloadLoad{o.Base, o.Overload, o.Hammer} {
		clients := "clients retrying at once"
		if load.HonorRetryAfter {
			clients = "clients honoring Retry-After"
		}
		_, err := fmt.Fprintf(w, "  %4d %s: goodput %.0f/s, p99 admitted %.1f ms, %d shed (503 overloaded, p99 %.1f ms, %d without Retry-After), API CPU %.3f ms/req, statuses %s, cores bench+api+pg+others %s\n",
			load.Clients, clients, load.GoodputRPS, load.AdmittedP99MS, load.Shed, load.ShedP99MS, load.ShedWithoutRetryAfter,
			load.APICPUMSPerRequest, statusSummary(load.StatusCounts),
			coresSummary(load.BenchProcessCores, load.APICores, load.PostgresCores, load.MachineCores))
		if err != nil {
			return fmt.Errorf("writing table: %w", err)
		}
	}
	_, err := fmt.Fprintf(w, "  API RSS: %.1f MiB before any request; at rest %.0f s after the few clients %.1f MiB, after the overload %.1f MiB; peak %.1f MiB\n",
		o.ColdRSSMB, o.SettleSeconds, o.IdleRSSMB, o.SettledRSSMB, o.PeakRSSMB)
	if err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	return nil
}

// limitProcessCPU formats the CPU per request of the limit's own process,
// "-" for a limit that runs in the bench's process.
func limitProcessCPU(r *Row) string {
	if r.Limit.ProcessCPUMSPerRequest == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", r.Limit.ProcessCPUMSPerRequest)
}

// peerValue formats value for the peer's column, "-" where it did not run.
func peerValue(r *Row, format string, value float64) string {
	if r.Peer == nil {
		return "-"
	}
	return fmt.Sprintf(format, value)
}

// cores writes the cores used by the bench's process, by the side's own
// process, by the database's backends, and by everything else on the
// machine.
func (f *Figures) cores() string {
	return coresSummary(f.BenchProcessCores, f.ProcessCores, f.PostgresCores, f.MachineCores)
}

// coresSummary writes cores as bench+process+postgres+others, others being
// what the machine used besides the three.
func coresSummary(bench, process, postgres, machine float64) string {
	others := max(machine-bench-process-postgres, 0)
	return fmt.Sprintf("%.1f+%.1f+%.1f+%.1f", bench, process, postgres, others)
}

// writeJSON writes the results to path as indented JSON.
func writeJSON(path string, results *Results) error {
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("marshaling results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// statusSummary writes status counts as "201:1234 409:2", by status.
func statusSummary(counts map[string]int) string {
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, status+":"+strconv.Itoa(counts[status]))
	}
	return strings.Join(parts, " ")
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// round rounds to two decimals.
func round(x float64) float64 {
	return math.Round(x*100) / 100
}
