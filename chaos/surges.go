package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/faultproxy"
)

// Settings of the surges that follow the load: clients that hang up, a
// burst above the API's capacity, and a database stall seen by a second
// API through a TCP proxy.
const (
	requestDeadline = "2500ms" // under lockTimeout, above stripeTimeout

	hangUps          = 200
	hangUpMaxDelay   = 100 * time.Millisecond
	hangUpSettleWait = 10 * time.Second // the goal: nothing locked this long after the clients stop

	burstClients = 1024

	stallRequests = 20
	stallFor      = 3 * time.Second
	// stallBound is the longest a request may take during the stall: the
	// database's deadlines of the stall API (below) and a margin.
	stallBound = 4 * time.Second
)

// stallAPIEnv are the stall API's database deadlines.
var stallAPIEnv = []string{"DB_ACQUIRE_TIMEOUT=500ms", "DB_CONNECT_TIMEOUT=500ms", "DB_STATEMENT_TIMEOUT=500ms", "DB_TX_TIMEOUT=1s"}

// surgeStats is what the surges saw.
type surgeStats struct {
	hangUpsSent     int
	hangUpsLocked   int // hang-up keys still locked hangUpSettleWait after the clients stopped
	burstAnswers    map[string]int
	burstBadShed    int // 503 overloaded without Retry-After, or with a key written
	burstAdmittedP  time.Duration
	burstLockedLeft int
	stallAnswers    map[string]int
	stallBad        int // answers slower than stallBound, or 503 without Retry-After
	stallLocked     int // stall keys still locked 5 s after the database came back
	stallUnfinished int // stall keys whose retries got no definitive answer
	ran             bool
}

// surgeChecks are the surges' invariants.
func (s *surgeStats) checks() []check {
	if !s.ran {
		return []check{{"surges: hang-ups, burst, stall", checkSkipped}}
	}
	return []check{
		{"no key locked 10 s after a hang-up storm", judge(s.hangUpsLocked == 0)},
		{"a burst above capacity is shed with 503 overloaded, Retry-After and no key", judge(s.burstBadShed == 0 && s.burstAnswers["503 overloaded"] > 0)},
		{"no key locked after the burst", judge(s.burstLockedLeft == 0)},
		{"a database stall answers 503 with Retry-After within the deadlines", judge(s.stallBad == 0)},
		{"no key locked 5 s after the stall, and every stalled request finishes on retry", judge(s.stallLocked == 0 && s.stallUnfinished == 0)},
	}
}

func (s *surgeStats) write(line func(label, format string, args ...any)) {
	if !s.ran {
		return
	}
	line("hang-ups", "%d sent; keys locked %s after: %d", s.hangUpsSent, hangUpSettleWait, s.hangUpsLocked)
	line("burst", "%d clients: %s; admitted p99 %s; shed wrongly %d", burstClients, formatCounts(s.burstAnswers), s.burstAdmittedP.Round(time.Millisecond), s.burstBadShed)
	line("database stall", "%s for %d requests: %s; out of bounds %d; locked after %d; unfinished %d",
		stallFor, stallRequests, formatCounts(s.stallAnswers), s.stallBad, s.stallLocked, s.stallUnfinished)
}

// surgeAnswer is one raw answer to POST /rides.
type surgeAnswer struct {
	elapsed    time.Duration
	err        error
	problem    string
	retryAfter string
	status     int
}

func (a *surgeAnswer) label() string {
	if a.err != nil {
		return "no answer"
	}
	if a.problem != "" {
		return strconv.Itoa(a.status) + " " + a.problem
	}
	return strconv.Itoa(a.status)
}

// postRide sends one POST /rides as emailOK with key to apiURL.
func postRide(ctx context.Context, client *http.Client, apiURL, key string) *surgeAnswer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/rides", strings.NewReader("origin_lat=0&origin_lon=0&target_lat=0&target_lon=0"))
	if err != nil {
		return &surgeAnswer{err: err}
	}
	req.Header.Set("Authorization", emailOK)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", key)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return &surgeAnswer{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	a := &surgeAnswer{elapsed: time.Since(start), retryAfter: resp.Header.Get("Retry-After"), status: resp.StatusCode}
	if i := strings.Index(string(body), "#problem-"); i >= 0 {
		a.problem, _, _ = strings.Cut(string(body[i+len("#problem-"):]), `"`)
	}
	return a
}

func surgeKey(kind string) string { return "chaos-" + kind + "-" + uuid.NewString() }

func countKeys(ctx context.Context, pool *pgxpool.Pool, where string, keys []string) (int, error) {
	var n int
	err := pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = ANY($1) AND "+where, keys).Scan(&n)
	return n, err
}

// runSurges runs the hang-ups, the burst and the stall, one after the other,
// once the load has stopped.
func (h *harness) runSurges(ctx context.Context, pool *pgxpool.Pool, res *result) error {
	s := &res.surges
	s.ran = true
	h.logger.InfoContext(ctx, "chaos: hang-ups")
	if err := h.hangUps(ctx, pool, s); err != nil {
		return err
	}
	h.logger.InfoContext(ctx, "chaos: burst above capacity")
	if err := h.burst(ctx, pool, s); err != nil {
		return err
	}
	h.logger.InfoContext(ctx, "chaos: database stall")
	return h.stall(ctx, pool, s)
}

// hangUps sends requests whose clients hang up after a random moment: before
// the key is written, during the Stripe call, during a commit.
func (h *harness) hangUps(ctx context.Context, pool *pgxpool.Pool, s *surgeStats) error {
	client := &http.Client{}
	keys := make([]string, hangUps)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = surgeKey("hangup")
		delay := rand.N(hangUpMaxDelay) + time.Microsecond
		wg.Go(func() {
			reqCtx, cancel := context.WithTimeout(ctx, delay)
			defer cancel()
			postRide(reqCtx, client, h.apiURL(), keys[i])
		})
	}
	wg.Wait()
	s.hangUpsSent = hangUps
	if !sleep(ctx, hangUpSettleWait) {
		return ctx.Err()
	}
	var err error
	s.hangUpsLocked, err = countKeys(ctx, pool, "lock_token IS NOT NULL", keys)
	return err
}

// burst sends burstClients requests at once, each with a fresh key, and no
// retry.
func (h *harness) burst(ctx context.Context, pool *pgxpool.Pool, s *surgeStats) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: burstClients}, Timeout: 30 * time.Second}
	keys := make([]string, burstClients)
	answers := make([]*surgeAnswer, burstClients)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = surgeKey("burst")
		wg.Go(func() { answers[i] = postRide(ctx, client, h.apiURL(), keys[i]) })
	}
	wg.Wait()
	s.burstAnswers = make(map[string]int)
	var shedKeys []string
	var admitted []time.Duration
	for i, a := range answers {
		s.burstAnswers[a.label()]++
		if a.problem == "overloaded" {
			shedKeys = append(shedKeys, keys[i])
			if a.retryAfter == "" {
				s.burstBadShed++
			}
		} else if a.err == nil {
			admitted = append(admitted, a.elapsed)
		}
	}
	if len(admitted) > 0 {
		slices.Sort(admitted)
		s.burstAdmittedP = admitted[(len(admitted)-1)*99/100]
	}
	written, err := countKeys(ctx, pool, "true", shedKeys)
	if err != nil {
		return err
	}
	s.burstBadShed += written
	if !sleep(ctx, 5*time.Second) {
		return ctx.Err()
	}
	s.burstLockedLeft, err = countKeys(ctx, pool, "lock_token IS NOT NULL", keys)
	return err
}

// stall starts a second API that reaches the database through a proxy,
// freezes the proxy while requests are in flight, and checks the answers,
// the locks once the database is back, and the retries.
func (h *harness) stall(ctx context.Context, pool *pgxpool.Pool, s *surgeStats) error {
	databaseURL, err := url.Parse(h.config.databaseURL)
	if err != nil {
		return fmt.Errorf("parsing database URL: %w", err)
	}
	proxy, err := faultproxy.NewProxy(databaseURL.Host)
	if err != nil {
		return err
	}
	defer proxy.Close()
	databaseURL.Host = proxy.Addr()
	port, err := freePort()
	if err != nil {
		return err
	}
	env := append([]string{"API_HOST=127.0.0.1", "API_PORT=" + strconv.Itoa(port), "DATABASE_URL=" + databaseURL.String(),
		"ADMIN_PORT=127.0.0.1:0", "AUTH_MODE=demo"}, stallAPIEnv...)
	api, err := h.start("api-stall", env, "api")
	if err != nil {
		return err
	}
	defer api.stop(stopTimeout)
	apiURL := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, err := waitReady(ctx, api, apiURL+"/readyz", readyTimeout); err != nil {
		return err
	}

	client := &http.Client{Timeout: 30 * time.Second}
	keys := make([]string, stallRequests)
	answers := make([]*surgeAnswer, stallRequests)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = surgeKey("stall")
		wg.Go(func() {
			time.Sleep(rand.N(200 * time.Millisecond))
			answers[i] = postRide(ctx, client, apiURL, keys[i])
		})
	}
	time.Sleep(50 * time.Millisecond)
	proxy.Set(faultproxy.Freeze)
	frozen := time.Now()
	wg.Wait()
	if !sleep(ctx, time.Until(frozen.Add(stallFor))) {
		return ctx.Err()
	}
	proxy.Set(faultproxy.Pass)
	s.stallAnswers = make(map[string]int)
	for _, a := range answers {
		s.stallAnswers[a.label()]++
		if a.err != nil || a.elapsed > stallBound || (a.status == http.StatusServiceUnavailable && a.retryAfter == "") {
			s.stallBad++
		}
	}
	if !sleep(ctx, 5*time.Second) {
		return ctx.Err()
	}
	if s.stallLocked, err = countKeys(ctx, pool, "lock_token IS NOT NULL", keys); err != nil {
		return err
	}
	for _, key := range keys {
		definitive := false
		for attempt := 0; attempt < 20 && !definitive; attempt++ {
			a := postRide(ctx, client, apiURL, key)
			definitive = a.err == nil && (expectedAnswers[a.label()] || a.status == http.StatusCreated)
			if !definitive && !sleep(ctx, 250*time.Millisecond) {
				return ctx.Err()
			}
		}
		if !definitive {
			s.stallUnfinished++
		}
	}
	return nil
}
