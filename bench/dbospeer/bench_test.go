package dbospeer

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPeer measures new keys and replays through the peer's HTTP
// handler at concurrency 1 and 8: requests per second, p99 latency, and the
// statements (round trips) per request on the peer's pool, DBOS's included.
// Run it with
//
//	go test -run '^$' -bench Peer -benchtime 2000x
//
// It first logs the statements of one new key and of one replay, and the
// statements DBOS sends on its own when idle.
func BenchmarkPeer(b *testing.B) {
	f := newFixture(b, nil)
	user := f.newUser(b, "tok_visa")
	newKeyOp := func(int) string { return newKey() }

	// Warm every connection up: each prepares a statement on first use.
	f.drive(b, 8, 200, user.Email, newKeyOp)
	f.logStatements(b, "new key", user.Email, newKey(), false)
	replayed := newKey()
	f.post(b, user.Email, replayed, validForm)
	f.logStatements(b, "replay", user.Email, replayed, true)
	before := f.counter.statements.Load()
	time.Sleep(2 * time.Second)
	b.Logf("idle: %.1f statements/s", float64(f.counter.statements.Load()-before)/2)

	finished := make([]string, 100)
	for i := range finished {
		finished[i] = newKey()
		status, body := f.post(b, user.Email, finished[i], validForm)
		if status != http.StatusCreated {
			b.Fatalf("preparing replays: %d %s", status, body)
		}
	}
	replayOp := func(i int) string { return finished[i%len(finished)] }

	for _, c := range []int{1, 8} {
		b.Run("NewKey/c="+strconv.Itoa(c), func(b *testing.B) { f.measure(b, c, user.Email, newKeyOp) })
		b.Run("Replay/c="+strconv.Itoa(c), func(b *testing.B) { f.measure(b, c, user.Email, replayOp) })
	}
}

// measure sends b.N requests from concurrency workers and reports their
// rate, p99 and statements per request.
func (f *fixture) measure(b *testing.B, concurrency int, email string, key func(int) string) {
	before := f.counter.statements.Load()
	b.ResetTimer()
	start := time.Now()
	latencies := f.drive(b, concurrency, b.N, email, key)
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(f.counter.statements.Load()-before)/float64(b.N), "stmts/op")
}

// drive sends n requests from concurrency workers, request i with key(i),
// and returns their latencies. Any answer but 201 fails b.
func (f *fixture) drive(b *testing.B, concurrency, n int, email string, key func(int) string) []time.Duration {
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				start := time.Now()
				status, body := f.post(b, email, key(i), validForm)
				latencies[i] = time.Since(start)
				if status != http.StatusCreated {
					b.Errorf("request %d: %d %s", i, status, body)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return latencies
}

// logStatements sends one request and logs the statements it sent, each
// cut to its first line.
func (f *fixture) logStatements(b *testing.B, what, email, key string, replay bool) {
	f.counter.record(true)
	status, body := f.post(b, email, key, validForm)
	statements := f.counter.record(false)
	if status != http.StatusCreated {
		b.Fatalf("%s: %d %s", what, status, body)
	}
	lines := make([]string, len(statements))
	for i, sql := range statements {
		sql = strings.Join(strings.Fields(sql), " ")
		if len(sql) > 110 {
			sql = sql[:110] + "…"
		}
		lines[i] = strconv.Itoa(i+1) + ". " + sql
	}
	b.Logf("%s (replay: %t): %d statements\n%s", what, replay, len(statements), strings.Join(lines, "\n"))
}
