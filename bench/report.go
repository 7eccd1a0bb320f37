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

	"github.com/jackc/pgx/v5"
)

// Row is one scenario at one concurrency: the API's figures, and the
// limit's beside them. An array of rows is results.json.
type Row struct {
	Scenario    string `json:"scenario"`
	Concurrency int    `json:"concurrency"`

	// Isolation is the level of the phases' transactions.
	Isolation string `json:"isolation"`

	// PoolMaxConns is the size of the pool that the API and the limit
	// share.
	PoolMaxConns int32 `json:"pool_max_conns"`

	// StripeLatencyMS is how long the Stripe fake takes per charge.
	StripeLatencyMS float64 `json:"stripe_latency_ms"`

	// APIRPS and LimitRPS count the requests answered as expected, per
	// second.
	APIRPS   float64 `json:"api_rps"`
	LimitRPS float64 `json:"limit_rps"`

	// Ratio is APIRPS / LimitRPS.
	Ratio float64 `json:"ratio"`

	// Figures are the API's.
	Figures

	// APINewConns is how many connections the API accepted during the
	// measured run: zero when the load generator keeps its connections
	// alive.
	APINewConns int64 `json:"api_new_conns"`

	// Limit is the limit's figures.
	Limit Figures `json:"limit"`
}

// Figures are what one side measured in a cell.
type Figures struct {
	// Requests is how many requests were answered in the measured run.
	Requests int     `json:"requests"`
	P50MS    float64 `json:"p50_ms"`
	P90MS    float64 `json:"p90_ms"`
	P99MS    float64 `json:"p99_ms"`

	// Errors counts answers other than the scenario expects; FirstError
	// shows the first.
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`

	// StatusCounts counts answers by HTTP status (by "ok" and "error" for
	// the limit).
	StatusCounts map[string]int `json:"status_counts"`

	// MaxDBConns is the most connections of the pool in use at once, and
	// MeanDBConns how many were in use on average.
	MaxDBConns  int32   `json:"max_db_conns"`
	MeanDBConns float64 `json:"mean_db_conns"`

	// DBConnMSPerRequest is how long a request held connections, in all:
	// a request that held one during the Stripe call would hold it for at
	// least Stripe's latency.
	DBConnMSPerRequest float64 `json:"db_conn_ms_per_request"`

	// DBRoundTripsPerRequest counts statements, BEGIN and COMMIT included;
	// TxPerRequest counts transactions, retries included.
	DBRoundTripsPerRequest float64 `json:"db_round_trips_per_request"`
	TxPerRequest           float64 `json:"tx_per_request"`

	// BenchProcessCores is how many cores this process kept busy (load
	// generator, API and Stripe fake together), PostgresCores how many the
	// database's backends did, and MachineCores how many were busy on the
	// whole machine, whatever ran there (other work shares it).
	BenchProcessCores float64 `json:"bench_process_cores"`
	MachineCores      float64 `json:"machine_cores"`
	PostgresCores     float64 `json:"postgres_cores"`

	// StripeCharges is how many charge requests Stripe got,
	// StripeCallsHoldingDBConn how many of them came while their request
	// held a database connection, and StripeNewConns how many connections
	// the Stripe client opened for them.
	StripeCharges            int   `json:"stripe_charges"`
	StripeCallsHoldingDBConn int64 `json:"stripe_calls_holding_db_conn"`
	StripeNewConns           int64 `json:"stripe_new_conns"`

	// Profiles are the CPU profiles of the measured runs, one per round,
	// kept when a target failed on this cell. go tool pprof merges them.
	Profiles []string `json:"profiles,omitempty"`
}

// newRow puts together the figures of a cell.
func newRow(sc *scenario, concurrency int, poolMaxConns int32, apiSide, limitSide *measurement) *Row {
	row := &Row{
		Scenario:        sc.name,
		Concurrency:     concurrency,
		Isolation:       isolationName(sc.isolation),
		PoolMaxConns:    poolMaxConns,
		StripeLatencyMS: ms(sc.stripe.latency),
		APIRPS:          round(apiSide.stats.RPS()),
		LimitRPS:        round(limitSide.stats.RPS()),
		Figures:         newFigures(apiSide),
		APINewConns:     apiSide.apiNewConns,
		Limit:           newFigures(limitSide),
	}
	if limitSide.stats.RPS() > 0 {
		row.Ratio = math.Round(apiSide.stats.RPS()/limitSide.stats.RPS()*1000) / 1000
	}
	return row
}

func newFigures(m *measurement) Figures {
	figures := Figures{
		Requests:                 m.stats.Requests(),
		P50MS:                    ms(m.stats.Percentile(0.50)),
		P90MS:                    ms(m.stats.Percentile(0.90)),
		P99MS:                    ms(m.stats.Percentile(0.99)),
		Errors:                   m.stats.Errors,
		StatusCounts:             m.stats.StatusCounts,
		MaxDBConns:               m.db.MaxConns,
		BenchProcessCores:        round(m.cpu.cores(m.cpu.process)),
		MachineCores:             round(m.cpu.cores(m.cpu.machine)),
		PostgresCores:            round(m.cpu.cores(m.cpu.postgres)),
		StripeCharges:            m.stripeCharges,
		StripeCallsHoldingDBConn: m.db.StripeCallsHolding,
		StripeNewConns:           m.stripeNewConns,
		Profiles:                 m.profiles,
	}
	if m.stats.FirstError != nil {
		figures.FirstError = m.stats.FirstError.Error()
	}
	if m.stats.Elapsed > 0 {
		figures.MeanDBConns = round(m.db.ConnTime.Seconds() / m.stats.Elapsed.Seconds())
	}
	if requests := m.stats.Requests(); requests > 0 {
		figures.DBConnMSPerRequest = ms(m.db.ConnTime / time.Duration(requests))
		figures.DBRoundTripsPerRequest = round(float64(m.db.Queries) / float64(requests))
		figures.TxPerRequest = round(float64(m.db.Begins) / float64(requests))
	}
	return figures
}

// writeTable writes the rows as a table.
func writeTable(w io.Writer, rows []*Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconc\tapi rps\tlimit rps\tratio\tp50 ms\tp90 ms\tp99 ms\terrors api/lim\tstatuses\tdb conns api/lim\tconn ms/req api/lim\ttrips/req api/lim\ttx/req api/lim\tcores go+pg+others api\tcores go+pg+others lim\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d/%d\t%s\t%d/%d\t%.2f/%.2f\t%.2f/%.2f\t%.2f/%.2f\t%s\t%s\t\n",
			r.Scenario, r.Concurrency, r.APIRPS, r.LimitRPS, r.Ratio, r.P50MS, r.P90MS, r.P99MS, r.Errors, r.Limit.Errors,
			statusSummary(r.StatusCounts), r.MaxDBConns, r.Limit.MaxDBConns, r.DBConnMSPerRequest, r.Limit.DBConnMSPerRequest,
			r.DBRoundTripsPerRequest, r.Limit.DBRoundTripsPerRequest, r.TxPerRequest, r.Limit.TxPerRequest,
			r.Figures.cores(), r.Limit.cores())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	_, err := fmt.Fprintln(w, "cores: this process (load generator, API, Stripe fake) + the database's backends + everything else on the machine;"+
		"\na cell where everything else took a good share of the 2 cores measured the neighbours as much as the API.")
	if err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	return nil
}

// cores writes the cores used by this process, by the database's backends,
// and by everything else on the machine.
func (f *Figures) cores() string {
	others := max(f.MachineCores-f.BenchProcessCores-f.PostgresCores, 0)
	return fmt.Sprintf("%.1f+%.1f+%.1f", f.BenchProcessCores, f.PostgresCores, others)
}

// writeJSON writes the rows to path as an indented JSON array.
func writeJSON(path string, rows []*Row) error {
	data, err := json.MarshalIndent(rows, "", "  ")
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

func isolationName(level pgx.TxIsoLevel) string {
	return strings.ReplaceAll(strings.ToLower(string(level)), " ", "_")
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// round rounds to two decimals.
func round(x float64) float64 {
	return math.Round(x*100) / 100
}
