package jobs

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/rides"
)

// Defaults of SimulatorConfig.
const (
	SimulatorAPIURLDefault          = "http://127.0.0.1:5000"
	SimulatorConcurrencyDefault     = 1
	SimulatorEmailDefault           = "user@example.com"
	SimulatorIntervalDefault        = 1 * time.Second
	SimulatorSummaryIntervalDefault = 10 * time.Second
	SimulatorTimeoutDefault         = 30 * time.Second
)

// simulatorMaxBody is how much of a response body the simulator reads and
// logs.
const simulatorMaxBody = 64 << 10

// SimulatorConfig configures a Simulator. Zero fields take their defaults.
type SimulatorConfig struct {
	// APIURL is the API's base URL. Zero means SimulatorAPIURLDefault.
	APIURL string

	// Concurrency is how many workers send requests at once, each waiting
	// for its answer before the next. Zero means
	// SimulatorConcurrencyDefault.
	Concurrency int

	// Duration is how long Start runs. Zero means until its context is
	// done.
	Duration time.Duration

	// Email is the user the requests authenticate as. Zero means
	// SimulatorEmailDefault.
	Email string

	// Interval is the longest pause of a worker after each request, when
	// Rate is zero: it sleeps a random time up to Interval. Zero means
	// SimulatorIntervalDefault; it must not be negative.
	Interval time.Duration

	// Rate is how many requests per second the workers send together, at
	// most, instead of the random pauses. Zero means random pauses.
	Rate float64

	// Requests is how many requests Start sends in all before it returns.
	// Zero means no limit.
	Requests int

	// SummaryInterval is how often Start logs its counts. Zero means
	// SimulatorSummaryIntervalDefault.
	SummaryInterval time.Duration

	// Timeout bounds each request, answer included. Zero means
	// SimulatorTimeoutDefault.
	Timeout time.Duration
}

// Simulator sends POST /rides to the API as one user, each request with a
// fresh idempotency key, half of them (at random) with raise_error=true so
// that they fail after creating their ride and leave work for the
// completer. Like the original, it never retries: recovering is the
// completer's job. It logs each answer, and a summary of its counts every
// SummaryInterval.
type Simulator struct {
	claimed  atomic.Int64
	client   *http.Client
	config   SimulatorConfig
	logger   *slog.Logger
	ridesURL string

	mu       sync.Mutex
	byStatus map[int]int
	errors   int
	sent     int
}

// NewSimulator returns a simulator. A nil config means every default; a nil
// logger discards its log lines.
func NewSimulator(config *SimulatorConfig, logger *slog.Logger) *Simulator {
	var c SimulatorConfig
	if config != nil {
		c = *config
	}
	c.APIURL = cmp.Or(c.APIURL, SimulatorAPIURLDefault)
	c.Concurrency = cmp.Or(c.Concurrency, SimulatorConcurrencyDefault)
	c.Email = cmp.Or(c.Email, SimulatorEmailDefault)
	c.Interval = cmp.Or(c.Interval, SimulatorIntervalDefault)
	c.SummaryInterval = cmp.Or(c.SummaryInterval, SimulatorSummaryIntervalDefault)
	c.Timeout = cmp.Or(c.Timeout, SimulatorTimeoutDefault)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Simulator{
		byStatus: make(map[int]int),
		client:   &http.Client{Timeout: c.Timeout},
		config:   c,
		logger:   logger,
		ridesURL: strings.TrimSuffix(c.APIURL, "/") + rides.RequestPath,
	}
}

// Start sends requests until ctx is done, Duration has passed or Requests
// were sent, then logs a last summary and returns. It blocks. Requests in
// flight when it stops are let finish (within Timeout), so that they are
// counted with their answers.
func (s *Simulator) Start(ctx context.Context) {
	if s.config.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.config.Duration)
		defer cancel()
	}
	var pace <-chan time.Time
	if s.config.Rate > 0 {
		ticker := time.NewTicker(max(time.Duration(float64(time.Second)/s.config.Rate), time.Microsecond))
		defer ticker.Stop()
		pace = ticker.C
	}

	var workers sync.WaitGroup
	for range s.config.Concurrency {
		workers.Go(func() { s.work(ctx, pace) })
	}
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()

	summary := time.NewTicker(s.config.SummaryInterval)
	defer summary.Stop()
	for {
		select {
		case <-summary.C:
			s.logSummary(ctx)
		case <-done:
			s.logSummary(ctx)
			return
		}
	}
}

// work is one worker: it sends requests, paced by pace when it is not nil
// and by random pauses otherwise, until ctx is done or no request is left.
func (s *Simulator) work(ctx context.Context, pace <-chan time.Time) {
	for {
		if pace != nil {
			select {
			case <-ctx.Done():
				return
			case <-pace:
			}
		}
		if ctx.Err() != nil || !s.claim() {
			return
		}
		// Errors are logged and counted by runOnce: the simulator goes on.
		_, _ = s.runOnce(context.WithoutCancel(ctx))
		if pace == nil && !sleep(ctx, rand.N(s.config.Interval)) {
			return
		}
	}
}

// claim takes one request from the budget of Requests, and reports whether
// there was one left.
func (s *Simulator) claim() bool {
	return s.config.Requests == 0 || s.claimed.Add(1) <= int64(s.config.Requests)
}

// simulatorResult is what one request got.
type simulatorResult struct {
	// Body is the answer's body, or its first simulatorMaxBody bytes.
	Body string

	// RaiseError is whether the request asked the API to fail on purpose.
	RaiseError bool

	// Status is the answer's HTTP status.
	Status int
}

// runOnce sends one ride request, logs its answer and counts it. An error
// means no answer came (connection refused, timeout, cancelled).
func (s *Simulator) runOnce(ctx context.Context) (*simulatorResult, error) {
	raiseError := rand.IntN(2) == 0
	key := uuid.NewString()
	res, err := s.send(ctx, key, raiseError)

	s.mu.Lock()
	s.sent++
	if err != nil {
		s.errors++
	} else {
		s.byStatus[res.Status]++
	}
	s.mu.Unlock()

	if err != nil {
		s.logger.WarnContext(ctx, "simulator: request failed",
			slog.String("idempotency_key", key),
			slog.Bool("raise_error", raiseError),
			slog.String("error", err.Error()),
		)
		return nil, err
	}
	s.logger.InfoContext(ctx, "simulator: response",
		slog.Int("status", res.Status),
		slog.String("body", res.Body),
		slog.String("idempotency_key", key),
		slog.Bool("raise_error", raiseError),
	)
	return res, nil
}

// send posts one ride request and reads its answer.
func (s *Simulator) send(ctx context.Context, key string, raiseError bool) (*simulatorResult, error) {
	form := url.Values{
		"origin_lat": {"0.0"},
		"origin_lon": {"0.0"},
		"target_lat": {"0.0"},
		"target_lon": {"0.0"},
	}
	if raiseError {
		form.Set("raise_error", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ridesURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", s.config.Email)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", key)

	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sending request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, simulatorMaxBody))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	return &simulatorResult{Body: strings.TrimSpace(string(body)), RaiseError: raiseError, Status: resp.StatusCode}, nil
}

// simulatorSummary is what a simulator has counted so far.
type simulatorSummary struct {
	// ByStatus counts answers by HTTP status.
	ByStatus map[int]int

	// Errors counts requests that got no answer.
	Errors int

	// Sent counts requests sent: the answers plus the errors.
	Sent int
}

// summary returns the counts so far.
func (s *Simulator) summary() *simulatorSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &simulatorSummary{ByStatus: maps.Clone(s.byStatus), Errors: s.errors, Sent: s.sent}
}

// logSummary logs the counts so far on one line:
// sent=120 status_201=58 status_409=1 status_500=61 errors=0.
func (s *Simulator) logSummary(ctx context.Context) {
	summary := s.summary()
	attrs := []slog.Attr{slog.Int("sent", summary.Sent)}
	for _, status := range slices.Sorted(maps.Keys(summary.ByStatus)) {
		attrs = append(attrs, slog.Int(fmt.Sprintf("status_%d", status), summary.ByStatus[status]))
	}
	attrs = append(attrs, slog.Int("errors", summary.Errors))
	s.logger.LogAttrs(ctx, slog.LevelInfo, "simulator: summary", attrs...)
}
