package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/rides"
)

// Defaults of SimulatorConfig.
const (
	SimulatorCancelShareDefault     = 0.1
	SimulatorEmailDefault           = "user@example.com"
	SimulatorIntervalDefault        = 1 * time.Second
	SimulatorSummaryIntervalDefault = 10 * time.Second
)

// simulatorKeyPrefix is how much of an idempotency key a request's log line
// shows: enough to find the key in the database.
const simulatorKeyPrefix = 8

// SimulatorConfig configures a Simulator. Zero fields take their defaults.
type SimulatorConfig struct {
	// APIKey, if set, is the API key the requests authenticate with, for an
	// API in api_key mode; Email is then only shown in the log. Empty: the
	// requests authenticate with Email, as demo mode wants.
	APIKey string

	// CancelShare is the share of the rides created (201) that the
	// simulator then cancels, each with one POST /rides/{id}/cancel under a
	// fresh key. Zero means SimulatorCancelShareDefault; a negative value
	// means none; it must not be more than 1.
	CancelShare float64

	// Email is the user the requests authenticate as. Zero means
	// SimulatorEmailDefault.
	Email string

	// Interval is the longest pause after each request: the simulator
	// sleeps a random time up to Interval, as the original does. Zero
	// means SimulatorIntervalDefault; it must not be negative.
	Interval time.Duration

	// Logger receives a line per request and the summaries. Nil discards
	// them.
	Logger *slog.Logger

	// Rate, if positive, replaces the random pauses: the simulator starts
	// a request every 1/Rate seconds, or as soon as the last one answered
	// if it took longer. It must not be negative.
	Rate float64

	// SummaryInterval is how often the simulator logs its counts. Zero
	// means SimulatorSummaryIntervalDefault; it must not be negative.
	SummaryInterval time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every
// default applied.
func (c *SimulatorConfig) withDefaults() *SimulatorConfig {
	var config SimulatorConfig
	if c != nil {
		config = *c
	}
	if config.CancelShare == 0 {
		config.CancelShare = SimulatorCancelShareDefault
	}
	if config.Email == "" {
		config.Email = SimulatorEmailDefault
	}
	if config.Interval == 0 {
		config.Interval = SimulatorIntervalDefault
	}
	if config.Logger == nil {
		config.Logger = slog.New(slog.DiscardHandler)
	}
	if config.SummaryInterval == 0 {
		config.SummaryInterval = SimulatorSummaryIntervalDefault
	}
	return &config
}

// validate rejects a configuration the simulator cannot run with.
func (c *SimulatorConfig) validate() error {
	switch {
	case c.CancelShare > 1:
		return fmt.Errorf("CancelShare must not be more than 1, got %g", c.CancelShare)
	case c.Interval < 0:
		//lint:ignore ST1005 the message starts with the field's name; NewSimulator prefixes it
		return fmt.Errorf("Interval must not be negative, got %s", c.Interval)
	case c.Rate < 0:
		//lint:ignore ST1005 the message starts with the field's name; NewSimulator prefixes it
		return fmt.Errorf("Rate must not be negative, got %g", c.Rate)
	case c.SummaryInterval < 0:
		return fmt.Errorf("SummaryInterval must not be negative, got %s", c.SummaryInterval)
	}
	return nil
}

// Simulator sends POST /rides to the API as one user, one request at a
// time, each with a fresh idempotency key, half of them (at random) with
// raise_error=true so that they fail after creating their ride and leave
// work for the completer, and cancels a share of the rides it created
// (CancelShare), each with one POST /rides/{id}/cancel under a fresh key.
// Like the original, it never retries: recovering is the completer's job.
// It logs a short line per answer, and a summary of its counts every
// SummaryInterval. For load, use the bench.
type Simulator struct {
	client *apiclient.Client
	config *SimulatorConfig

	// startMu guards cancel and done, set while the simulator runs.
	startMu sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	byStatus map[int]int
	errors   int
	sent     int

	cancelsByStatus map[int]int // nil until the first cancel's answer
	cancelErrors    int
	cancelsSent     int
}

// NewSimulator returns a simulator that sends its requests with client. A
// nil config means every default.
func NewSimulator(client *apiclient.Client, config *SimulatorConfig) (*Simulator, error) {
	if client == nil {
		return nil, errors.New("simulator: client must not be nil")
	}
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	return &Simulator{client: client, config: config, byStatus: make(map[int]int)}, nil
}

// Start starts sending requests in a goroutine and returns. The simulator
// runs until ctx is done or Stop is called; it logs a last summary then.
// Starting a running simulator does nothing.
func (s *Simulator) Start(ctx context.Context) error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.done != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.cancel, s.done = cancel, done

	pace := slog.Duration("interval", s.config.Interval)
	if s.config.Rate > 0 {
		pace = slog.Float64("rate", s.config.Rate)
	}
	attrs := []slog.Attr{slog.String("api_url", s.client.BaseURL()), slog.String("email", s.config.Email)}
	if s.config.APIKey != "" {
		attrs = append(attrs, slog.String("auth", "api_key"))
	}
	attrs = append(attrs, pace, slog.Float64("cancel_share", max(s.config.CancelShare, 0)), slog.Duration("summary_interval", s.config.SummaryInterval))
	s.config.Logger.LogAttrs(ctx, slog.LevelInfo, "simulator: started", attrs...)
	go func() {
		defer close(done)
		s.run(ctx)
		s.config.Logger.InfoContext(ctx, "simulator: stopped")
	}()
	return nil
}

// Stop stops the simulator and waits for it: the request in flight is let
// finish (within the client's timeout), so that it is counted with its
// answer. It is safe to call when the simulator is not running.
func (s *Simulator) Stop() {
	s.startMu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.startMu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

// run sends requests, one at a time, until ctx is done.
func (s *Simulator) run(ctx context.Context) {
	next := time.NewTimer(0) // the first request at once
	defer next.Stop()
	summary := time.NewTicker(s.config.SummaryInterval)
	defer summary.Stop()
	for {
		select {
		case <-ctx.Done():
			s.logSummary(ctx)
			return
		case <-summary.C:
			s.logSummary(ctx)
		case <-next.C:
			start := time.Now()
			// Errors are logged and counted by runOnce: the simulator goes on.
			_, _ = s.runOnce(ctx)
			next.Reset(s.pause(time.Since(start)))
		}
	}
}

// pause is how long to wait after a request that took took.
func (s *Simulator) pause(took time.Duration) time.Duration {
	if s.config.Rate > 0 {
		return max(time.Duration(float64(time.Second)/s.config.Rate)-took, 0)
	}
	return rand.N(s.config.Interval)
}

// simulatorResult is what one request got.
type simulatorResult struct {
	*apiclient.Answer

	// Cancel is the answer to the cancel of the ride created, nil if the
	// simulator sent none or got no answer.
	Cancel *apiclient.Answer

	// RaiseError is whether the request asked the API to fail on purpose.
	RaiseError bool
}

// runOnce sends one ride request, logs its answer and counts it, and
// cancels the ride created if the dice say so (CancelShare). An error means
// the ride request got no answer (connection refused, timeout, cancelled);
// a cancel without an answer is logged and counted only.
func (s *Simulator) runOnce(ctx context.Context) (*simulatorResult, error) {
	// A request under way when the simulator stops finishes; none starts
	// after: the cancel of a ride created just before a stop is left out,
	// as the API it would go to may be stopping too.
	res, err := s.postRide(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	if res.Status == http.StatusCreated && res.Ride != nil && rand.Float64() < s.config.CancelShare && ctx.Err() == nil {
		res.Cancel = s.cancelRide(context.WithoutCancel(ctx), res.Ride.ID)
	}
	return res, nil
}

// postRide sends one ride request, logs its answer and counts it.
func (s *Simulator) postRide(ctx context.Context) (*simulatorResult, error) {
	raiseError := rand.IntN(2) == 0
	key := uuid.NewString()
	start := time.Now()
	ride := &apiclient.Ride{APIKey: s.config.APIKey, IdempotencyKey: key, Body: apiclient.RideForm(rides.Params{}, raiseError)}
	if ride.APIKey == "" {
		ride.Email = s.config.Email
	}
	answer, err := s.client.PostRide(ctx, ride)
	latency := time.Since(start)

	s.mu.Lock()
	s.sent++
	if err != nil {
		s.errors++
	} else {
		s.byStatus[answer.Status]++
	}
	s.mu.Unlock()

	// raise_error only when set: the line stays short.
	attrs := []slog.Attr{slog.String("key", key[:simulatorKeyPrefix])}
	if raiseError {
		attrs = append(attrs, slog.Bool("raise_error", true))
	}
	attrs = append(attrs, slog.Duration("latency", latency.Round(time.Millisecond/10)))
	if err != nil {
		s.config.Logger.LogAttrs(ctx, slog.LevelWarn, "simulator: no answer", append(attrs, slog.String("error", err.Error()))...)
		return nil, err
	}
	attrs = append([]slog.Attr{slog.Int("status", answer.Status)}, attrs...)
	if answer.ProblemType != "" {
		attrs = append(attrs, slog.String("problem", answer.ProblemType))
	}
	s.config.Logger.LogAttrs(ctx, slog.LevelInfo, "simulator: response", attrs...)
	return &simulatorResult{Answer: answer, RaiseError: raiseError}, nil
}

// cancelRide sends one cancel of ride rideID with a fresh key, logs its
// answer and counts it. It returns nil if no answer came.
func (s *Simulator) cancelRide(ctx context.Context, rideID int64) *apiclient.Answer {
	key := uuid.NewString()
	start := time.Now()
	answer, err := s.client.CancelRide(ctx, apiclient.Authorization(s.config.APIKey, s.config.Email), key, rideID, "")
	latency := time.Since(start)

	s.mu.Lock()
	s.cancelsSent++
	if err != nil {
		s.cancelErrors++
	} else {
		if s.cancelsByStatus == nil {
			s.cancelsByStatus = make(map[int]int)
		}
		s.cancelsByStatus[answer.Status]++
	}
	s.mu.Unlock()

	attrs := []slog.Attr{
		slog.Int64("ride_id", rideID),
		slog.String("key", key[:simulatorKeyPrefix]),
		slog.Duration("latency", latency.Round(time.Millisecond/10)),
	}
	if err != nil {
		s.config.Logger.LogAttrs(ctx, slog.LevelWarn, "simulator: no answer to cancel", append(attrs, slog.String("error", err.Error()))...)
		return nil
	}
	attrs = append([]slog.Attr{slog.Int("status", answer.Status)}, attrs...)
	if answer.ProblemType != "" {
		attrs = append(attrs, slog.String("problem", answer.ProblemType))
	}
	s.config.Logger.LogAttrs(ctx, slog.LevelInfo, "simulator: cancel response", attrs...)
	return answer
}

// simulatorSummary is what a simulator has counted so far.
type simulatorSummary struct {
	// ByStatus counts answers by HTTP status.
	ByStatus map[int]int

	// CancelErrors counts cancels that got no answer.
	CancelErrors int

	// Cancels counts cancels sent: their answers plus CancelErrors.
	Cancels int

	// CancelsByStatus counts the cancels' answers by HTTP status; nil
	// before the first.
	CancelsByStatus map[int]int

	// Errors counts requests that got no answer.
	Errors int

	// Sent counts requests sent: the answers plus the errors.
	Sent int
}

// summary returns the counts so far.
func (s *Simulator) summary() *simulatorSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &simulatorSummary{
		ByStatus:        maps.Clone(s.byStatus),
		CancelErrors:    s.cancelErrors,
		Cancels:         s.cancelsSent,
		CancelsByStatus: maps.Clone(s.cancelsByStatus),
		Errors:          s.errors,
		Sent:            s.sent,
	}
}

// logSummary logs the counts so far on one line: sent=120 status_201=58
// status_409=1 status_500=61 errors=0 cancels=6 cancel_200=6 cancel_errors=0.
func (s *Simulator) logSummary(ctx context.Context) {
	summary := s.summary()
	attrs := []slog.Attr{slog.Int("sent", summary.Sent)}
	for _, status := range slices.Sorted(maps.Keys(summary.ByStatus)) {
		attrs = append(attrs, slog.Int(fmt.Sprintf("status_%d", status), summary.ByStatus[status]))
	}
	attrs = append(attrs, slog.Int("errors", summary.Errors), slog.Int("cancels", summary.Cancels))
	for _, status := range slices.Sorted(maps.Keys(summary.CancelsByStatus)) {
		attrs = append(attrs, slog.Int(fmt.Sprintf("cancel_%d", status), summary.CancelsByStatus[status]))
	}
	attrs = append(attrs, slog.Int("cancel_errors", summary.CancelErrors))
	s.config.Logger.LogAttrs(ctx, slog.LevelInfo, "simulator: summary", attrs...)
}
