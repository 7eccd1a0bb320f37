package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/faultproxy"
	"github.com/rocketrides/rocketrides/stripefake"
)

// robustStack is one API process of the built binary, on a database of its
// own, charging through a Stripe fake served by the test.
type robustStack struct {
	admin  string // the operator listener's base URL
	api    *exec.Cmd
	output *bytes.Buffer
	pool   *pgxpool.Pool
	proxy  *faultproxy.Proxy // with robustOpts.proxy: between the API and the database
	stripe string            // the fake's base URL
	url    string            // the API's base URL
}

type robustOpts struct {
	proxy   bool // the API reaches the database through a faultproxy
	env     []string
	latency time.Duration
}

// startRobustStack seeds the demo users, starts the API with opts.env, and
// waits until it is healthy.
func startRobustStack(t *testing.T, binary string, opts *robustOpts) *robustStack {
	t.Helper()
	databaseURL := dbtest.NewDatabaseURL(t)
	pool, err := db.NewPool(context.Background(), databaseURL, 2)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	fake := httptest.NewServer(stripefake.New(stripefake.Config{Latency: opts.latency}))
	t.Cleanup(fake.Close)
	stripeEnv := []string{"STRIPE_API_KEY=sk_test_robust", "STRIPE_API_BASE=" + fake.URL}
	out, err := commandEnv(binary, databaseURL, stripeEnv, "seed")
	require.NoError(t, err, out)

	port := freePort(t)
	apiDatabaseURL := databaseURL
	var proxy *faultproxy.Proxy
	if opts.proxy {
		u, err := url.Parse(databaseURL)
		require.NoError(t, err)
		proxy, err = faultproxy.NewProxy(u.Host)
		require.NoError(t, err)
		t.Cleanup(proxy.Close)
		u.Host = proxy.Addr()
		apiDatabaseURL = u.String()
	}
	var output bytes.Buffer
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(binary, "api", "--api-port", strconv.Itoa(port), "--admin-port", adminAddr)
	// The clients authenticate as the demo users, by email.
	cmd.Env = append(append(append(os.Environ(), "DATABASE_URL="+apiDatabaseURL, "LOG_LEVEL=info", "AUTH_MODE=demo"), stripeEnv...), opts.env...)
	cmd.Stdout, cmd.Stderr = &output, &output
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	apiURL := "http://127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.True(t, waitHealthy(ctx, apiURL+"/healthz"), "api did not become healthy: %s", &output)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("api output:\n%s", &output)
		}
	})
	return &robustStack{admin: "http://" + adminAddr, api: cmd, output: &output, pool: pool, proxy: proxy, stripe: fake.URL, url: apiURL}
}

// shed is the API's rocketrides_api_shed_total, summed over its bounds.
func (s *robustStack) shed(t *testing.T) int {
	t.Helper()
	status, body := httpGet(s.admin + "/metrics")
	require.Equal(t, http.StatusOK, status, body)
	total := 0
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, "rocketrides_api_shed_total{"); ok {
			_, value, _ := strings.Cut(rest, "} ")
			n, err := strconv.Atoi(strings.TrimSpace(value))
			require.NoError(t, err, line)
			total += n
		}
	}
	return total
}

func commandEnv(binary, databaseURL string, env []string, args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+databaseURL), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type rideAnswer struct {
	status     int
	retryAfter string
	body       string
	elapsed    time.Duration
	err        error
}

// keyPrefix makes the tests' short names long enough for Idempotency-Key.
const keyPrefix = "robustness-test-key-"

// post sends POST /rides for the demo user with key (after keyPrefix), on
// ctx.
func (s *robustStack) post(ctx context.Context, key string) rideAnswer {
	form := "origin_lat=0&origin_lon=0&target_lat=0&target_lon=0"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/rides", strings.NewReader(form))
	if err != nil {
		return rideAnswer{err: err}
	}
	req.Header.Set("Authorization", "user@example.com")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", keyPrefix+key)
	start := time.Now()
	response, err := http.DefaultClient.Do(req)
	if err != nil {
		return rideAnswer{err: err, elapsed: time.Since(start)}
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return rideAnswer{status: response.StatusCode, retryAfter: response.Header.Get("Retry-After"), body: string(body), elapsed: time.Since(start), err: err}
}

// retryUntilDone retries key until it answers something other than 409 (a
// request still in progress), for up to 10 s.
func (s *robustStack) retryUntilDone(t *testing.T, key string) rideAnswer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		answer := s.post(context.Background(), key)
		require.NoError(t, answer.err)
		if answer.status != http.StatusConflict || time.Now().After(deadline) {
			return answer
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *robustStack) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// requireNoLockedKeys waits up to within for every key to be unlocked.
func (s *robustStack) requireNoLockedKeys(t *testing.T, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		return s.count(t, "SELECT count(*) FROM idempotency_keys WHERE lock_token IS NOT NULL") == 0
	}, within, 50*time.Millisecond, "keys still locked:\n%s", s.output)
}

// charges is the number of charges the Stripe fake made.
func (s *robustStack) charges(t *testing.T) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.stripe+"/v1/charges?limit=100", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_robust")
	response, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer response.Body.Close()
	var list struct {
		Data    []json.RawMessage `json:"data"`
		HasMore bool              `json:"has_more"`
	}
	require.NoError(t, json.NewDecoder(response.Body).Decode(&list))
	require.False(t, list.HasMore)
	return len(list.Data)
}

func (s *robustStack) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	require.NoError(t, s.api.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- s.api.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-time.After(within):
		t.Fatalf("api did not stop within %s of SIGTERM:\n%s", within, s.output)
		return nil
	}
}

func TestRobustness(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)

	// Clients hang up at every point of the request: before the key phase,
	// during it, during the Stripe call, during the last commit. Each
	// request runs to its end anyway: the retry gets its 201 at once, one
	// charge each, nothing left unfinished or locked.
	t.Run("HangUps", func(t *testing.T) {
		t.Parallel()
		const latency = 300 * time.Millisecond
		stack := startRobustStack(t, binary, &robustOpts{latency: latency})
		delays := []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond,
			latency / 2, latency - 5*time.Millisecond, latency, latency + 2*time.Millisecond, latency + 5*time.Millisecond}
		keys := make([]string, len(delays))
		var wg sync.WaitGroup
		for i, delay := range delays {
			keys[i] = fmt.Sprintf("hangup-%d", i)
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), delay+time.Microsecond)
				defer cancel()
				stack.post(ctx, keys[i])
			})
		}
		wg.Wait()
		time.Sleep(latency + 200*time.Millisecond) // every request in flight has ended
		for _, key := range keys {
			answer := stack.retryUntilDone(t, key)
			require.Equal(t, http.StatusCreated, answer.status, "%s: %s", key, answer.body)
			require.Less(t, answer.elapsed, latency+time.Second, key)
		}
		require.Equal(t, len(keys), stack.charges(t), "one charge per key")
		require.Zero(t, stack.count(t, "SELECT count(*) FROM idempotency_keys WHERE recovery_point <> 'finished'"))
		stack.requireNoLockedKeys(t, time.Second)
		require.Contains(t, stack.output.String(), "status=499", "a hang-up is recorded as 499")
		require.NotContains(t, stack.output.String(), "level=ERROR")
	})

	// A stalled database, then a cut one, through a proxy: requests answer
	// 503 with Retry-After within the database's deadlines, nothing stays
	// locked once the database is back, and the retries get their 201.
	t.Run("DatabaseStallAndCut", func(t *testing.T) {
		t.Parallel()
		const latency = 500 * time.Millisecond
		stack := startRobustStack(t, binary, &robustOpts{
			proxy:   true,
			latency: latency,
			env: []string{"DB_ACQUIRE_TIMEOUT=500ms", "DB_CONNECT_TIMEOUT=500ms", "DB_STATEMENT_TIMEOUT=500ms",
				"DB_TX_TIMEOUT=1s", "REQUEST_DEADLINE=5s"},
		})
		const bound = 3 * time.Second // acquire, connect and transaction, and a margin
		for _, fault := range []faultproxy.Mode{faultproxy.Freeze, faultproxy.Cut} {
			var (
				wg      sync.WaitGroup
				answers = make([]rideAnswer, 6)
			)
			for i := range answers {
				wg.Go(func() { answers[i] = stack.post(context.Background(), fmt.Sprintf("%s-%d", fault, i)) })
			}
			time.Sleep(latency / 2) // the requests are at Stripe
			stack.proxy.Set(fault)
			wg.Wait()
			faultStart := time.Now()
			// Requests sent during the fault answer at once, too.
			during := stack.post(context.Background(), string(fault)+"-during")
			for i, answer := range append(answers, during) {
				require.NoError(t, answer.err, "%s %d", fault, i)
				require.Equal(t, http.StatusServiceUnavailable, answer.status, "%s %d: %s", fault, i, answer.body)
				require.NotEmpty(t, answer.retryAfter, "%s %d", fault, i)
				require.Less(t, answer.elapsed, latency+bound, "%s %d", fault, i)
			}
			time.Sleep(time.Until(faultStart.Add(2 * time.Second)))
			stack.proxy.Set(faultproxy.Pass)
			stack.requireNoLockedKeys(t, 5*time.Second)
			for i := range answers {
				answer := stack.retryUntilDone(t, fmt.Sprintf("%s-%d", fault, i))
				require.Equal(t, http.StatusCreated, answer.status, "%s %d: %s", fault, i, answer.body)
			}
		}
		require.Equal(t, 12, stack.charges(t))
		require.Equal(t, 12, stack.count(t, "SELECT count(*) FROM rides WHERE stripe_charge_id IS NOT NULL"))
	})

	// Many more clients than the API admits: the rest answer 503 overloaded
	// with Retry-After at once, and no key is written for them.
	t.Run("Overload", func(t *testing.T) {
		t.Parallel()
		stack := startRobustStack(t, binary, &robustOpts{
			latency: 200 * time.Millisecond,
			env:     []string{"DB_MAX_CONNS=4", "API_MAX_WORKING=4", "API_MAX_IN_FLIGHT=16", "API_ADMISSION_WAIT=10ms"},
		})
		answers := make([]rideAnswer, 64)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() { answers[i] = stack.post(context.Background(), fmt.Sprintf("overload-%d", i)) })
		}
		wg.Wait()
		var created, overloaded int
		for i, answer := range answers {
			require.NoError(t, answer.err)
			switch answer.status {
			case http.StatusCreated:
				created++
			case http.StatusServiceUnavailable:
				overloaded++
				require.Contains(t, answer.body, "overloaded")
				require.Contains(t, []string{"1", "2", "3"}, answer.retryAfter)
				require.Less(t, answer.elapsed, time.Second)
				require.Zero(t, stack.count(t, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = $1", fmt.Sprintf(keyPrefix+"overload-%d", i)))
			default:
				t.Fatalf("request %d: %d %s", i, answer.status, answer.body)
			}
		}
		require.Positive(t, created)
		require.Positive(t, overloaded)
		require.Equal(t, overloaded, stack.shed(t), "rocketrides_api_shed_total")
		require.Equal(t, created, stack.count(t, "SELECT count(*) FROM idempotency_keys"))
		require.Equal(t, created, stack.charges(t))
	})

	// SIGTERM with requests waiting on a slow Stripe: they finish, the API
	// exits 0, nothing stays locked.
	t.Run("SIGTERMLetsRequestsFinish", func(t *testing.T) {
		t.Parallel()
		stack := startRobustStack(t, binary, &robustOpts{latency: 2 * time.Second})
		answers := sendAndStop(t, stack, 8, 10*time.Second)
		for i, answer := range answers {
			require.NoError(t, answer.err)
			require.Equal(t, http.StatusCreated, answer.status, "%d: %s", i, answer.body)
		}
		stack.requireNoLockedKeys(t, time.Second)
		require.Equal(t, 8, stack.charges(t))
	})

	// SIGTERM with a shutdown timeout shorter than Stripe: the requests
	// still running are ended, release their keys, answer 503 with
	// Retry-After, and the API exits 0.
	t.Run("SIGTERMEndsTheRest", func(t *testing.T) {
		t.Parallel()
		stack := startRobustStack(t, binary, &robustOpts{latency: 4 * time.Second, env: []string{"API_SHUTDOWN_TIMEOUT=500ms"}})
		answers := sendAndStop(t, stack, 8, 8*time.Second)
		for i, answer := range answers {
			require.NoError(t, answer.err)
			require.Equal(t, http.StatusServiceUnavailable, answer.status, "%d: %s", i, answer.body)
			require.Contains(t, answer.body, "shutting-down")
			require.NotEmpty(t, answer.retryAfter)
		}
		stack.requireNoLockedKeys(t, time.Second)
	})
}

// sendAndStop sends n requests, sends SIGTERM while they are in flight, and
// requires the API to exit 0 within the given time.
func sendAndStop(t *testing.T, stack *robustStack, n int, within time.Duration) []rideAnswer {
	t.Helper()
	answers := make([]rideAnswer, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { answers[i] = stack.post(context.Background(), fmt.Sprintf("sigterm-%d", i)) })
	}
	require.Eventually(t, func() bool {
		return stack.count(t, "SELECT count(*) FROM idempotency_keys WHERE lock_token IS NOT NULL") == n
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, stack.stop(t, within), "api exit status:\n%s", stack.output)
	wg.Wait()
	return answers
}
