package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
)

// Bounds on the length of text log lines, in characters: a typical line
// reads at a glance, and none is a wall, except a line with an error, which
// quotes the error whole.
const (
	logLineTypicalMax = 160 // the median and the 90th percentile stay under it
	logLineMax        = 250
)

// TestLogLines runs `rocketrides all` for a few seconds, with the simulator
// fast and the completer impatient, once in text and once in JSON, and
// checks the log a person reads: every part's start-up line with its
// settings, one short line per simulated request, a completer pass with its
// counts, every part's stopped line and all's last; each line tagged with
// its part and its message prefixed by it; lines short; and the JSON lines
// carrying the same attributes as the text ones.
func TestLogLines(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)

	var text, jsonLines []string
	var wg sync.WaitGroup
	for format, lines := range map[string]*[]string{"text": &text, "json": &jsonLines} {
		wg.Go(func() { *lines = runAllFor(t, binary, format, 6*time.Second) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	t.Run("Text", func(t *testing.T) {
		lengths := make([]int, len(text))
		for i, l := range text {
			lengths[i] = len(l)
		}
		slices.Sort(lengths)
		median, p90, longest := lengths[len(lengths)/2], lengths[len(lengths)*9/10], lengths[len(lengths)-1]
		t.Logf("%d lines: median %d characters, p90 %d, longest %d", len(lengths), median, p90, longest)
		require.Less(t, median, logLineTypicalMax)
		require.Less(t, p90, logLineTypicalMax)
		for _, l := range text {
			if !strings.Contains(l, " error=") {
				require.LessOrEqual(t, len(l), logLineMax, l)
			}
		}

		all := strings.Join(text, "\n")
		line := regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=("[a-z-]+: [^"]*"|[a-z-]+:\S*) process=[a-z-]+( |$)`)
		for _, l := range text {
			require.Regexp(t, line, l, "each line: time, level, a message prefixed by its part, the part")
		}

		// One start-up line per part, with its settings.
		for _, start := range []string{
			`msg="stripe-fake: started, as STRIPE_API_KEY is unset" process=stripe-fake stripe_api_base=http://127\.0\.0\.1:\d+$`,
			`msg="completer: started" process=completer grace=1s interval=1s last_run_threshold=1s lock_timeout=1m30s batch_size=1000$`,
			`msg="enqueuer: started" process=enqueuer interval=200ms batch_size=1000$`,
			`msg="reaper: started" process=reaper horizon=72h0m0s interval=5s batch_size=1000$`,
			`msg="admin: started" process=admin river_ui=http://127\.0\.0\.1:\d+/riverui/ metrics=http://127\.0\.0\.1:\d+/metrics$`,
			`msg="api: listening" process=api addr=127\.0\.0\.1:\d+ request_deadline=\S+ max_in_flight=\d+ max_working=\d+ idle_timeout=\S+$`,
			`msg="simulator: started" process=simulator api_url=http://127\.0\.0\.1:\d+ email=user@example\.com interval=20ms cancel_share=0\.1 summary_interval=10s$`,
			`msg="all: running" process=all api=http://127\.0\.0\.1:\d+ simulator=true$`,
		} {
			require.Len(t, regexp.MustCompile(`(?m)`+start).FindAllString(all, -1), 1, "one line matching %s", start)
		}
		require.Regexp(t, `(?m)msg="seed: user created" process=seed email=user@example\.com user_id=\d+ stripe_customer_id=cus_\w+$`, all,
			"seeding is tagged as its own step")

		// One short line per simulated request, and a summary.
		response := regexp.MustCompile(`msg="simulator: response" process=simulator status=\d{3} key=[0-9a-f]{8} (raise_error=true )?latency=[0-9.]+[µm]?s( problem=[a-z-]+)?$`)
		var numResponses int
		for _, l := range text {
			if strings.Contains(l, `msg="simulator: response"`) {
				require.Regexp(t, response, l)
				require.Less(t, len(l), logLineTypicalMax, l)
				numResponses++
			}
		}
		require.Greater(t, numResponses, 20, "the simulator sends a request every 10ms on average")
		require.Regexp(t, `(?m)msg="simulator: summary" process=simulator sent=\d+ status_201=\d+ .*errors=0$`, all)

		// The completer drives the keys the simulator's raise_error left
		// behind, and says what it did with them.
		require.Regexp(t, `(?m)msg="completer: pass finished" process=completer num_found=\d+ num_finished=[1-9]\d* num_in_progress=\d+ num_unfinished=\d+ num_conflict=\d+ num_skipped_unknown_workflow=0 num_error=0$`, all)

		// The Stripe fake's request lines are debug, out of an info log.
		require.NotContains(t, all, "stripe-fake: request")

		// Every part says it has stopped; all says so last.
		for _, part := range []string{"admin", "api", "completer", "enqueuer", "reaper", "simulator"} {
			require.Regexp(t, `(?m)msg="`+part+`: stopped" process=`+part+`$`, all)
		}
		require.Regexp(t, `msg="all: stopped" process=all$`, text[len(text)-1])

	})

	t.Run("JSON", func(t *testing.T) {
		// Each line is a JSON object with the same attributes as the text
		// line of the same message.
		textAttrs := attrsByMessage(t, text, parseTextLine)
		jsonAttrs := attrsByMessage(t, jsonLines, parseJSONLine)
		require.Contains(t, jsonAttrs, "completer: started")
		require.Contains(t, jsonAttrs, "all: stopped")
		// The simulator adds raise_error and problem to a line only when the
		// request had them, and the two runs draw their requests at random:
		// a message seen once or twice (simulator: no answer, at shutdown)
		// may have them in one run and not in the other. They are compared
		// over all the lines of each format instead.
		optional := []string{"raise_error", "problem"}
		withoutOptional := func(attrs map[string]bool) []string {
			return slices.DeleteFunc(slices.Sorted(maps.Keys(attrs)), func(k string) bool { return slices.Contains(optional, k) })
		}
		optionalSeen := func(byMessage map[string]map[string]bool) []string {
			var seen []string
			for _, k := range optional {
				for _, attrs := range byMessage {
					if attrs[k] {
						seen = append(seen, k)
						break
					}
				}
			}
			return seen
		}
		require.Equal(t, optional, optionalSeen(textAttrs), "raise_error and problem in the text lines")
		require.Equal(t, optional, optionalSeen(jsonAttrs), "raise_error and problem in the JSON lines")
		var numCompared int
		for msg, want := range textAttrs {
			got, ok := jsonAttrs[msg]
			if !ok || msg == "simulator: summary" { // its status_NNN counts vary from run to run
				continue
			}
			require.Equal(t, withoutOptional(want), withoutOptional(got), "attributes of %q", msg)
			numCompared++
		}
		require.Greater(t, numCompared, 10)
	})
}

// runAllFor runs `rocketrides all` on a database of its own in format for
// d after it is healthy, stops it with SIGINT, and returns its log lines.
func runAllFor(t *testing.T, binary, format string, d time.Duration) []string {
	t.Helper()
	databaseURL := dbtest.NewDatabaseURL(t)
	port := freePort(t)
	var output syncBuffer
	cmd := exec.Command(binary, "all", "--api-port", strconv.Itoa(port), "--admin-port", "127.0.0.1:"+strconv.Itoa(freePort(t)),
		"--simulator-interval", "20ms", "--completer-interval", "1s", "--completer-grace", "1s",
		"--completer-last-run-threshold", "1s", "--enqueuer-interval", "200ms")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL, "STRIPE_API_KEY=", "LOG_LEVEL=info", "LOG_FORMAT="+format)
	cmd.Stdout, cmd.Stderr = &output, &output
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.True(t, waitHealthy(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/healthz"), "all did not become healthy: %s", output.String())
	time.Sleep(d)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), output.String())
	return strings.Split(strings.TrimSpace(output.String()), "\n")
}

// TestProcessLogs starts each long-running subcommand on its own and stops
// it: each logs its start-up line with its settings and, once stopped, its
// stopped line, every line tagged with the process.
func TestProcessLogs(t *testing.T) {
	t.Parallel()
	binary := buildBinary(t)
	for _, tt := range []struct {
		name  string
		args  func(t *testing.T) []string
		start string // a regexp
		stop  string
	}{
		{"API", func(t *testing.T) []string {
			return []string{"api", "--api-port", strconv.Itoa(freePort(t)), "--admin-port", "127.0.0.1:" + strconv.Itoa(freePort(t))}
		}, `msg="api: listening" process=api addr=127\.0\.0\.1:\d+ request_deadline=\S+ max_in_flight=\d+ max_working=\d+ idle_timeout=\S+`, `msg="api: stopped" process=api`},
		{"Completer", func(*testing.T) []string { return []string{"completer"} },
			`msg="completer: started" process=completer grace=5m0s interval=5s last_run_threshold=1m0s lock_timeout=1m30s batch_size=1000`,
			`msg="completer: stopped" process=completer`},
		{"Enqueuer", func(*testing.T) []string { return []string{"enqueuer"} },
			`msg="enqueuer: started" process=enqueuer interval=5s batch_size=1000`, `msg="enqueuer: stopped" process=enqueuer`},
		{"Reaper", func(*testing.T) []string { return []string{"reaper"} },
			`msg="reaper: started" process=reaper horizon=72h0m0s interval=5s batch_size=1000`, `msg="reaper: stopped" process=reaper`},
		{"Simulator", func(*testing.T) []string { return []string{"simulator", "--api-url", "http://127.0.0.1:1"} },
			`msg="simulator: started" process=simulator api_url=http://127\.0\.0\.1:1 email=user@example\.com interval=1s cancel_share=0\.1 summary_interval=10s`,
			`msg="simulator: stopped" process=simulator`},
		{"StripeFake", func(t *testing.T) []string {
			return []string{"stripe-fake", "--addr", "127.0.0.1:" + strconv.Itoa(freePort(t))}
		},
			`msg="stripe-fake: started" process=stripe-fake addr=127\.0\.0\.1:\d+ latency=0s fail_before_rate=0 fail_after_rate=0 seed=0`,
			`msg="stripe-fake: stopped" process=stripe-fake`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var output, stdout syncBuffer
			cmd := exec.Command(binary, tt.args(t)...)
			cmd.Env = append(os.Environ(), "DATABASE_URL="+dbtest.NewDatabaseURL(t), "STRIPE_API_KEY=", "LOG_LEVEL=info", "LOG_FORMAT=text")
			// The log is stderr; stdout is for what a command prints for
			// its user (the API keys seed makes, shown once).
			cmd.Stdout, cmd.Stderr = &stdout, &output
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			start := regexp.MustCompile(`(?m)` + tt.start + `$`)
			require.Eventually(t, func() bool { return start.MatchString(output.String()) }, 20*time.Second, 20*time.Millisecond,
				"start-up line %s in:\n%s", tt.start, &output)
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			require.NoError(t, cmd.Wait(), output.String())

			lines := strings.Split(strings.TrimSpace(output.String()), "\n")
			require.Len(t, start.FindAllString(output.String(), -1), 1, "one start-up line")
			// The stopped line comes last, or before other parts' stopped
			// lines only (api's admin listener stops after it).
			stop := slices.IndexFunc(lines, regexp.MustCompile(tt.stop+`$`).MatchString)
			require.GreaterOrEqual(t, stop, 0, "stopped line %s in:\n%s", tt.stop, &output)
			for _, l := range lines[stop+1:] {
				require.Regexp(t, `msg="[a-z-]+: stopped"`, l)
			}
			for _, l := range lines {
				require.Regexp(t, `^time=\S+ level=\w+ msg=("[a-z-]+: [^"]*"|[a-z-]+:\S*) process=[a-z-]+( |$)`, l)
			}
		})
	}
}

// attrsByMessage collects, for each message, the attribute names its lines
// carry besides time, level, msg and process.
func attrsByMessage(t *testing.T, lines []string, parse func(t *testing.T, line string) (string, []string)) map[string]map[string]bool {
	t.Helper()
	attrs := make(map[string]map[string]bool)
	for _, l := range lines {
		msg, keys := parse(t, l)
		if attrs[msg] == nil {
			attrs[msg] = make(map[string]bool)
		}
		for _, k := range keys {
			attrs[msg][k] = true
		}
	}
	return attrs
}

// textAttr is one key=value of slog's text format; a value is quoted when
// it holds spaces or quotes.
var textAttr = regexp.MustCompile(`([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

func parseTextLine(t *testing.T, line string) (string, []string) {
	t.Helper()
	var msg string
	var keys []string
	for _, m := range textAttr.FindAllStringSubmatch(line, -1) {
		switch m[1] {
		case "msg":
			var err error
			if msg, err = strconv.Unquote(m[2]); err != nil {
				msg = m[2]
			}
		case "time", "level", "process":
		default:
			keys = append(keys, m[1])
		}
	}
	return msg, keys
}

func parseJSONLine(t *testing.T, line string) (string, []string) {
	t.Helper()
	var record map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &record), line)
	for _, k := range []string{"time", "level", "msg", "process"} {
		require.Contains(t, record, k, line)
	}
	var keys []string
	for k := range record {
		if k != "time" && k != "level" && k != "msg" && k != "process" {
			keys = append(keys, k)
		}
	}
	return record["msg"].(string), keys
}

// syncBuffer is a bytes.Buffer that a running process writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
