package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/rides"
)

// The clients' behaviour.
const (
	// abandonRate is the fraction of the requests that fail on purpose
	// whose client then gives up, leaving the request to the completer.
	abandonRate = 0.2

	attemptTimeout = 10 * time.Second
	backoffBase    = 100 * time.Millisecond
	backoffMax     = time.Second

	// declineRate is the fraction of requests sent as the user whose card
	// is declined.
	declineRate = 0.1

	// maxAttempts bounds a client's attempts at one request: about 30 s of
	// retries, far more than any fault of the run lasts.
	maxAttempts = 40

	// raiseErrorRate is the fraction of requests sent with raise_error on
	// their first attempt.
	raiseErrorRate = 0.5
)

// The users that `rocketrides seed` creates.
const (
	emailDeclined = "user-bad-source@example.com"
	emailOK       = "user@example.com"
)

// expectedAnswers are the definitive answers a request may end with; any
// other is a failure.
var expectedAnswers = map[string]bool{
	"201":                  true,
	"402 card-declined":    true,
	"503 payment-rejected": true,
}

// loadStats is what the clients saw.
type loadStats struct {
	// abandoned counts requests whose client gave up on purpose after a
	// first attempt with raise_error.
	abandoned int

	// answers counts the definitive answer of each request by answer.
	answers map[string]int

	// attempts counts every attempt by answer.
	attempts map[string]int

	// cancels is what the clients saw of their cancels.
	cancels cancelStats

	// gaveUp counts requests that got no definitive answer in maxAttempts.
	gaveUp int

	// interrupted counts requests still retrying when the drain ended.
	interrupted int

	// raised counts requests sent with raise_error on their first attempt.
	raised int

	// rides maps the ride of each 201 answer to the charge it named.
	rides map[int64]string

	// sent counts requests (each with its own key, however many attempts).
	sent int

	// sharedRides counts 201 answers naming a ride that another request's
	// answer named too.
	sharedRides int
}

// load is the clients: each sends requests with fresh keys, and retries
// each with the same key until a definitive answer.
type load struct {
	client *apiclient.Client
	config *config
	logger *slog.Logger

	mu    sync.Mutex
	stats loadStats
}

func newLoad(cfg *config, apiURL string, logger *slog.Logger) (*load, error) {
	client, err := apiclient.NewClient(apiURL, &apiclient.ClientConfig{Timeout: attemptTimeout})
	if err != nil {
		return nil, err
	}
	return &load{
		client: client,
		config: cfg,
		logger: logger,
		stats: loadStats{
			answers:  make(map[string]int),
			attempts: make(map[string]int),
			cancels:  newCancelStats(),
			rides:    make(map[int64]string),
		},
	}, nil
}

// driveLoad runs the clients and the faults for the run's duration, then
// lets the clients finish their requests (within drainTimeout).
func (h *harness) driveLoad(ctx context.Context, res *result) error {
	h.logger.InfoContext(ctx, "chaos: load and faults", slog.Duration("duration", h.config.duration), slog.Uint64("seed", h.config.seed))
	loadCtx, stopLoad := context.WithTimeout(ctx, h.config.duration)
	defer stopLoad()
	retryCtx, stopRetries := context.WithCancel(ctx)
	defer stopRetries()

	l, err := newLoad(h.config, h.apiURL(), h.logger)
	if err != nil {
		return err
	}
	clientsDone := make(chan struct{})
	go func() {
		l.run(loadCtx, retryCtx)
		close(clientsDone)
	}()
	liveDone := make(chan *liveReconcile, 1)
	go func() { liveDone <- h.reconcileDuringLoad(loadCtx) }()

	plan := planFaults(rand.New(rand.NewPCG(h.config.seed, 0)), h.config.duration, h.config.kills)
	err = h.runFaults(ctx, loadCtx, time.Now(), plan, res)
	if err != nil {
		stopLoad()
	}
	<-loadCtx.Done()
	h.logger.InfoContext(ctx, "chaos: load stopped, waiting for the clients' last requests")
	select {
	case <-clientsDone:
	case <-time.After(drainTimeout):
		stopRetries()
		<-clientsDone
	}
	res.load = l.snapshot()
	res.live = <-liveDone
	return err
}

// run runs the clients: they start requests at the configured rate until
// loadCtx ends, and retry them until retryCtx ends.
func (l *load) run(loadCtx, retryCtx context.Context) {
	ticker := time.NewTicker(time.Duration(float64(time.Second) / l.config.rate))
	defer ticker.Stop()
	var clients sync.WaitGroup
	for i := range l.config.concurrency {
		rng := rand.New(rand.NewPCG(l.config.seed, uint64(i)+1))
		clients.Go(func() {
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-ticker.C:
				}
				l.request(retryCtx, newRideRequest(rng))
			}
		})
	}
	clients.Wait()
}

// rideRequest is one request, the same at every attempt but for raise_error.
type rideRequest struct {
	abandon       bool // give up after the first attempt
	abandonCancel bool // give up on the cancel after its first attempt, unless definitive
	cancel        bool // cancel the ride once created
	email         string
	key           string
	params        rides.Params
	raiseError    bool // on the first attempt
}

func newRideRequest(rng *rand.Rand) *rideRequest {
	coordinate := func(limit float64) float64 {
		return (rng.Float64()*2 - 1) * limit
	}
	r := &rideRequest{
		email: emailOK,
		key:   uuid.NewString(),
		params: rides.Params{
			OriginLat: coordinate(90),
			OriginLon: coordinate(180),
			TargetLat: coordinate(90),
			TargetLon: coordinate(180),
		},
		raiseError: rng.Float64() < raiseErrorRate,
	}
	r.abandon = r.raiseError && rng.Float64() < abandonRate
	if rng.Float64() < declineRate {
		r.email = emailDeclined
	}
	r.cancel = rng.Float64() < cancelRate
	r.abandonCancel = rng.Float64() < abandonCancelRate
	return r
}

// request sends r until it gets a definitive answer, its client gives up,
// or ctx ends.
func (l *load) request(ctx context.Context, r *rideRequest) {
	l.update(func(s *loadStats) {
		s.sent++
		if r.raiseError {
			s.raised++
		}
	})
	for attempt := 1; ; attempt++ {
		a := l.send(ctx, r, attempt == 1 && r.raiseError)
		if ctx.Err() != nil {
			l.update(func(s *loadStats) { s.interrupted++ })
			return
		}
		l.update(func(s *loadStats) { s.attempts[a.label()]++ })
		switch {
		case a.definitive():
			l.finish(a)
			if a.status == http.StatusCreated && r.cancel {
				l.cancel(ctx, r, a.rideID)
			}
			return
		case attempt == 1 && r.abandon:
			l.update(func(s *loadStats) { s.abandoned++ })
			return
		case attempt == maxAttempts:
			l.logger.WarnContext(ctx, "chaos: client gave up", slog.String("idempotency_key", r.key), slog.String("last_answer", a.label()))
			l.update(func(s *loadStats) { s.gaveUp++ })
			return
		}
		if !sleep(ctx, backoff(attempt)) {
			l.update(func(s *loadStats) { s.interrupted++ })
			return
		}
	}
}

// backoff is the pause before attempt+1: doubling from backoffBase up to
// backoffMax, with jitter. It is shorter than the API's Retry-After, to fit
// more retries into the run.
func backoff(attempt int) time.Duration {
	ceiling := min(backoffBase<<min(attempt-1, 10), backoffMax)
	return ceiling/2 + rand.N(ceiling/2)
}

// finish records a request's definitive answer.
func (l *load) finish(a *answer) {
	l.update(func(s *loadStats) {
		s.answers[a.label()]++
		if a.status != http.StatusCreated {
			return
		}
		if _, ok := s.rides[a.rideID]; ok {
			s.sharedRides++
		}
		s.rides[a.rideID] = a.chargeID
	})
}

func (l *load) update(fn func(s *loadStats)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(&l.stats)
}

// snapshot returns the stats once the clients are done.
func (l *load) snapshot() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// answer is what one attempt got.
type answer struct {
	chargeID    string // of a 201
	problemKind string // of an error, such as "card-declined"
	refundID    string // of a cancel's 200
	rideID      int64  // of a 201 or a cancel's 200
	status      int    // 0 if no answer came back
}

// label names the answer for the figures: the status, and for an error
// its problem's kind.
func (a *answer) label() string {
	switch {
	case a.status == 0:
		return "no answer (API killed?)"
	case a.problemKind != "":
		return strconv.Itoa(a.status) + " " + a.problemKind
	default:
		return strconv.Itoa(a.status)
	}
}

// definitive reports whether the answer ends the request: a success, a
// client error other than 409, or a stored refusal from Stripe. Anything
// else, no answer included, is retried with the same key.
func (a *answer) definitive() bool {
	switch {
	case a.status >= 200 && a.status < 300:
		return true
	case a.status == http.StatusConflict:
		return false
	case a.status >= 400 && a.status < 500:
		return true
	default:
		return a.status == http.StatusServiceUnavailable && a.problemKind == "payment-rejected"
	}
}

// send makes one attempt at r.
func (l *load) send(ctx context.Context, r *rideRequest, raiseError bool) *answer {
	got, err := l.client.PostRide(ctx, &apiclient.Ride{
		Email:          r.email,
		IdempotencyKey: r.key,
		Body:           apiclient.RideForm(r.params, raiseError),
	})
	if err != nil {
		return &answer{} // no answer, or the API died while answering
	}
	a := &answer{problemKind: got.ProblemType, status: got.Status}
	if got.Ride != nil {
		a.rideID = got.Ride.ID
		if got.Ride.StripeChargeID != nil {
			a.chargeID = *got.Ride.StripeChargeID
		}
	}
	return a
}
