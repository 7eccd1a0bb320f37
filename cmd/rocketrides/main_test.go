package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
)

// buildBinary builds rocketrides into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	binary := filepath.Join(t.TempDir(), "rocketrides")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return binary
}

// command runs the binary with args against databaseURL and returns its
// combined output.
func command(t *testing.T, binary, databaseURL string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "LOG_LEVEL=info")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func freePort(t *testing.T) int {
	t.Helper()
	// A port of the kernel's ephemeral range (what a ":0" listener gets)
	// may be handed to another listener, or to an outgoing connection,
	// between this check and the child's bind. Ports below that range are
	// only ever taken on request, and none is handed out twice here.
	for range 100 {
		port := freePortMin + rand.IntN(freePortMax-freePortMin)
		if _, taken := handedOutPorts.LoadOrStore(port, true); taken {
			continue
		}
		listener, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		require.NoError(t, listener.Close())
		return port
	}
	t.Fatal("no free port found")
	return 0
}

// The ports freePort hands out: below Linux's default ephemeral range
// (32768-60999), above the registered services that listen here.
const (
	freePortMin = 20_000
	freePortMax = 32_768
)

// handedOutPorts are the ports freePort returned in this test binary.
var handedOutPorts sync.Map

func TestBinary(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)

	// migrate up is idempotent, and down to nothing then up again works.
	t.Run("MigrateRoundTrip", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t) // migrated already, from the template
		out, err := command(t, binary, databaseURL, "migrate", "up")
		require.NoError(t, err, out)
		require.NotContains(t, out, "migration applied", "nothing left to apply")

		out, err = command(t, binary, databaseURL, "migrate", "down", "--all")
		require.NoError(t, err, out)
		out, err = command(t, binary, databaseURL, "migrate", "status")
		require.NoError(t, err, out)
		require.Contains(t, out, "pending")
		require.Contains(t, out, "0 of ")

		out, err = command(t, binary, databaseURL, "migrate", "up")
		require.NoError(t, err, out)
		require.Contains(t, out, "migration applied")
		out, err = command(t, binary, databaseURL, "migrate", "status")
		require.NoError(t, err, out)
		require.NotContains(t, out, "pending")
	})

	t.Run("UnreachableDatabase", func(t *testing.T) {
		t.Parallel()
		out, err := command(t, binary, "postgres://rider:s3cret@127.0.0.1:1/nowhere?sslmode=disable", "migrate", "status")
		require.Error(t, err)
		require.Contains(t, out, "postgres://rider:xxxxx@127.0.0.1:1/nowhere")
		require.NotContains(t, out, "s3cret")
		require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
	})

	// api serves River UI and the metrics on the operator's listener, with
	// a River client of its own, and not on the public port.
	t.Run("APIServesAdmin", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t)
		port := freePort(t)
		adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		var output bytes.Buffer
		cmd := exec.Command(binary, "api", "--api-port", strconv.Itoa(port), "--admin-port", adminAddr)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "STRIPE_API_KEY=")
		cmd.Stdout, cmd.Stderr = &output, &output
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.True(t, waitHealthy(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/healthz"), "api did not become healthy: %s", &output)
		status, body := httpGet("http://" + adminAddr + "/riverui/api/jobs?state=available")
		require.Equal(t, http.StatusOK, status, body)
		require.JSONEq(t, `{"data":[]}`, body)
		status, body = httpGet("http://" + adminAddr + "/metrics")
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, "rocketrides_api_requests_total")
		status, _ = httpGet("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
		require.Equal(t, http.StatusNotFound, status, "metrics are not on the public API")

		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		require.NoError(t, cmd.Wait(), "api exited with an error: %s", &output)
		require.Regexp(t, `msg="admin: started" .*river_ui=http://`+regexp.QuoteMeta(adminAddr)+`/riverui/`, output.String())
		require.Contains(t, output.String(), "admin: stopped")
	})

	// seed prints each demo user's new API key once; api-key creates,
	// lists and revokes keys, and never prints a secret again.
	t.Run("APIKeys", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t)
		key := regexp.MustCompile(`rr_(\d+)_[0-9a-f]{64}`)
		out, err := command(t, binary, databaseURL, "seed", "--stripe-api-key=")
		require.NoError(t, err, out)
		require.Len(t, key.FindAllString(out, -1), 2, out)
		require.Contains(t, out, "API key of user@example.com (shown once): rr_")
		out, err = command(t, binary, databaseURL, "seed", "--stripe-api-key=")
		require.NoError(t, err, out)
		require.Empty(t, key.FindAllString(out, -1), "a key is shown once: %s", out)

		out, err = command(t, binary, databaseURL, "api-key", "create", "--email", "user@example.com")
		require.NoError(t, err, out)
		created := key.FindStringSubmatch(out)
		require.NotNil(t, created, out)
		out, err = command(t, binary, databaseURL, "api-key", "revoke", created[1])
		require.NoError(t, err, out)
		out, err = command(t, binary, databaseURL, "api-key", "list", "--email", "user@example.com")
		require.NoError(t, err, out)
		require.Regexp(t, `(?m)^\d+\tcreated \S+\tlive$`, out)
		require.Regexp(t, `(?m)^`+created[1]+`\tcreated \S+\trevoked \S+$`, out)
		require.NotRegexp(t, key, out)

		out, err = command(t, binary, databaseURL, "api-key", "create", "--email", "nobody@example.com")
		require.Error(t, err)
		require.Contains(t, out, `rocketrides: api-key: no user has email "nobody@example.com"`)
		out, err = command(t, binary, databaseURL, "api-key", "revoke", "999999")
		require.Error(t, err)
		require.Contains(t, out, "rocketrides: api-key: no API key has id 999999")
	})

	// inspect reports a key and its ride as text or JSON; an unknown key
	// or ride is one line and exit 1.
	t.Run("Inspect", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t)
		ctx := context.Background()
		pool, err := pgxpool.New(ctx, databaseURL)
		require.NoError(t, err)
		defer pool.Close()
		user := testfactory.User(ctx, t, pool, nil)
		key := testfactory.IdempotencyKey(ctx, t, pool, user, &testfactory.IdempotencyKeyOpts{RecoveryPoint: testfactory.Ptr("ride_created")})
		ride := testfactory.Ride(ctx, t, pool, user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
		inspect := func(args ...string) (string, string, error) {
			cmd := exec.Command(binary, append([]string{"inspect"}, args...)...)
			cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "STRIPE_API_KEY=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			return stdout.String(), stderr.String(), err
		}

		out, stderr, err := inspect("--email", user.Email, "--key", key.IdempotencyKey)
		require.NoError(t, err, stderr)
		require.Regexp(t, `(?m)^  workflow +POST /rides$`, out)
		require.Regexp(t, `(?m)^  recovery point +ride_created$`, out)
		require.Regexp(t, `(?m)^  status +pending_payment$`, out)
		require.Contains(t, stderr, "Stripe is not asked")

		out, stderr, err = inspect("--ride", strconv.FormatInt(ride.ID, 10), "--json")
		require.NoError(t, err, stderr)
		var report struct {
			Key struct {
				ID       int64  `json:"id"`
				Workflow string `json:"workflow"`
			} `json:"idempotency_key"`
			Ride struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			} `json:"ride"`
			AuditRecords []any `json:"audit_records"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &report), out)
		require.Equal(t, key.ID, report.Key.ID)
		require.Equal(t, "POST /rides", report.Key.Workflow)
		require.Equal(t, ride.ID, report.Ride.ID)
		require.Equal(t, "pending_payment", report.Ride.Status)
		require.NotNil(t, report.AuditRecords, "an empty list, not null")

		for _, args := range [][]string{
			{"--email", user.Email, "--key", "no-such-key"},
			{"--ride", "999999"},
		} {
			out, stderr, err = inspect(args...)
			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr)
			require.Equal(t, 1, exitErr.ExitCode())
			require.Empty(t, out)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			require.Regexp(t, `^rocketrides: no such (idempotency key "no-such-key" for .+|ride with id 999999)$`, lines[len(lines)-1])
		}
	})

	// A setting a constructor rejects is one line naming it, and exit 1.
	t.Run("BadSettingIsOneLine", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t)
		cmd := exec.Command(binary, "completer", "--completer-interval=-1s")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "STRIPE_API_KEY=sk_test_unused", "STRIPE_API_BASE=http://127.0.0.1:1")
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr, string(out))
		require.Equal(t, 1, exitErr.ExitCode(), string(out))
		require.Equal(t, "rocketrides: completer: Interval must not be negative, got -1s", strings.TrimSpace(string(out)))
	})

	t.Run("NoCommandPrintsUsage", func(t *testing.T) {
		t.Parallel()
		out, err := exec.Command(binary).CombinedOutput()
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr, string(out))
		require.Equal(t, 2, exitErr.ExitCode(), string(out))
		require.Contains(t, string(out), "Usage: rocketrides <command>")
		for _, command := range []string{"all", "api", "migrate", "reconcile"} {
			require.Regexp(t, `(?m)^\s+`+command+`\s`, string(out), "the usage lists %s", command)
		}
		require.NotContains(t, string(out), "expected one of")
	})

	// A process that needs the schema says, in its one-line error, what to
	// run, whether the database was never migrated or does not exist.
	t.Run("UnmigratedDatabase", func(t *testing.T) {
		t.Parallel()
		unmigrated := emptyDatabaseURL(t)
		missing := databaseURLNamed(t, "rocketrides_test_missing_"+strconv.FormatInt(time.Now().UnixNano(), 36)) // never created
		for _, test := range []struct {
			databaseURL, want string
		}{
			{unmigrated, "the database is not migrated (ours: 0 of "},
			{missing, "does not exist (SQLSTATE 3D000): run `rocketrides migrate up`, which creates it"},
		} {
			// A Stripe key, so that no built-in fake announces itself
			// before the database is opened.
			const stripeKey = "--stripe-api-key=sk_test_unused"
			for _, args := range [][]string{{"api", "--api-port", strconv.Itoa(freePort(t)), stripeKey}, {"completer", stripeKey}, {"enqueuer"}, {"reaper"}} {
				out, err := command(t, binary, test.databaseURL, args...)
				require.Error(t, err, out)
				require.Contains(t, out, test.want, "%s", args[0])
				require.Contains(t, out, "run `rocketrides migrate up`", "%s", args[0])
				require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
			}
		}

		out, err := command(t, binary, unmigrated, "migrate", "up")
		require.NoError(t, err, out)
		out, err = command(t, binary, unmigrated, "migrate", "status")
		require.NoError(t, err, out)
		require.NotContains(t, out, "pending")
	})

	// all starts every process, serves, and stops cleanly on SIGINT.
	t.Run("AllStartsAndStops", func(t *testing.T) {
		t.Parallel()
		databaseURL := dbtest.NewDatabaseURL(t)
		port := freePort(t)
		adminURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
		var output bytes.Buffer
		cmd := exec.Command(binary, "all", "--api-port", strconv.Itoa(port), "--admin-port", strings.TrimPrefix(adminURL, "http://"),
			"--simulator-interval", "100ms", "--completer-interval", "100ms")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "STRIPE_API_KEY=")
		cmd.Stdout, cmd.Stderr = &output, &output
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.True(t, waitHealthy(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/healthz"), "all did not become healthy")
		// Let the simulator's requests reach the enqueuer and River.
		receiptSent := regexp.MustCompile(`(?m)^rocketrides_receipts_sent_total [1-9]`)
		require.Eventually(t, func() bool {
			status, body := httpGet(adminURL + "/metrics")
			return status == http.StatusOK && receiptSent.Match([]byte(body))
		}, 20*time.Second, 100*time.Millisecond, "a receipt is sent")
		// River UI, on the same River client, shows the receipt River worked.
		// River records a job completed shortly after its worker returns.
		require.Eventually(t, func() bool {
			status, body := httpGet(adminURL + "/riverui/api/jobs?state=completed")
			return status == http.StatusOK && strings.Contains(body, `"kind":"send_ride_receipt"`)
		}, 10*time.Second, 100*time.Millisecond, "River UI lists a completed receipt")
		status, _ := httpGet("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
		require.Equal(t, http.StatusNotFound, status, "metrics are not on the public API")

		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			require.NoError(t, err, "all exited with an error")
		case <-time.After(15 * time.Second):
			t.Fatal("all did not stop within 15s of SIGINT")
		}
		require.Contains(t, output.String(), "api: shutting down")
		for _, process := range []string{"admin", "completer", "enqueuer", "reaper", "simulator", "all"} {
			require.Contains(t, output.String(), process+": stopped", "process %s", process)
		}
		require.Contains(t, output.String(), `msg="completer: started" process=completer grace=5m0s interval=100ms last_run_threshold=1m0s lock_timeout=1m30s batch_size=1000`)
		require.Contains(t, output.String(), `msg="seed: user created" process=seed`, "seeding is tagged as its own step")
		require.Contains(t, output.String(), `level=WARN msg="api: AUTH_MODE=demo: anyone who knows a rider's email can charge their card; not for production`)
	})
}

// httpGet returns the status and body of a GET of url; status 0 if it
// could not be sent.
func httpGet(url string) (int, string) {
	response, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return 0, err.Error()
	}
	return response.StatusCode, string(body)
}

// emptyDatabaseURL creates a database that was never migrated on the test
// server, named after the test database (so that test-clean finds it),
// dropped when the test ends, and returns its URL.
func emptyDatabaseURL(t *testing.T) string {
	t.Helper()
	pool := dbtest.Pool(t)
	name := pool.Config().ConnConfig.Database + "_empty_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	identifier := pgx.Identifier{name}.Sanitize()
	_, err := pool.Exec(context.Background(), "CREATE DATABASE "+identifier)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP DATABASE "+identifier+" WITH (FORCE)")
		require.NoError(t, err)
	})
	return databaseURLNamed(t, name)
}

// databaseURLNamed is the test database's URL with the database name
// replaced.
func databaseURLNamed(t *testing.T, name string) string {
	t.Helper()
	parsed, err := url.Parse(dbtest.DatabaseURL())
	require.NoError(t, err)
	parsed.Path = "/" + name
	return parsed.String()
}
