package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rocketrides/rocketrides/apiclient"
)

// Scenario names, as results.json has them.
const (
	scenarioNewKeys             = "new_keys"
	scenarioNewKeysSerializable = "new_keys_serializable"
	scenarioRecovery            = "recovery"
	scenarioReplays             = "replays"
	scenarioStripeLatency       = "stripe_latency"
)

// scenarioNames are the scenarios in the order they run.
func scenarioNames() []string {
	return []string{scenarioNewKeys, scenarioNewKeysSerializable, scenarioReplays, scenarioRecovery, scenarioStripeLatency}
}

// scenario is one kind of load, run on the API and on the limit at each of
// its concurrencies.
type scenario struct {
	// apiOp and limitOp are one iteration of a worker on either side.
	apiOp   func(client *apiclient.Client) Op
	limitOp func(l *limit) Op

	concurrencies []int

	// freshTables empties the tables before every round of either side,
	// so that each starts from the same database.
	freshTables bool

	isolation pgx.TxIsoLevel
	name      string

	// setup, if set, prepares the scenario once, before its first cell.
	setup func(ctx context.Context, client *apiclient.Client) error

	stripe *stripeStack
}

// scenarios returns the scenarios in the order they run.
func (b *bench) scenarios() []*scenario {
	replays := &replaySet{keysPerUser: b.config.replayKeysPerUser, stripe: b.fast}
	return []*scenario{
		newKeysScenario(scenarioNewKeys, pgx.ReadCommitted, b.fast, b.config.concurrencies),
		newKeysScenario(scenarioNewKeysSerializable, pgx.Serializable, b.fast, b.config.concurrencies),
		{
			apiOp:         replays.apiOp,
			concurrencies: b.config.concurrencies,
			isolation:     pgx.ReadCommitted,
			limitOp:       replays.limitOp,
			name:          scenarioReplays,
			setup:         replays.setup,
			stripe:        b.fast,
		},
		{
			apiOp:         recoveryAPIOp(b.fast),
			concurrencies: b.config.concurrencies,
			freshTables:   true,
			isolation:     pgx.ReadCommitted,
			limitOp:       recoveryLimitOp(b.fast),
			name:          scenarioRecovery,
			stripe:        b.fast,
		},
		newKeysScenario(scenarioStripeLatency, pgx.ReadCommitted, b.slow, []int{b.config.latencyConcurrency}),
	}
}

// newKeysScenario is a fresh key on every request.
func newKeysScenario(name string, isolation pgx.TxIsoLevel, stripe *stripeStack, concurrencies []int) *scenario {
	return &scenario{
		apiOp: func(client *apiclient.Client) Op {
			return func(ctx context.Context, worker, _ int, rec *Recorder) {
				start := time.Now()
				ans, err := postRide(ctx, client, stripe.user(worker).Email, uuid.NewString(), false)
				recordAnswer(rec, start, ans, err, http.StatusCreated, false)
			}
		},
		concurrencies: concurrencies,
		freshTables:   true,
		isolation:     isolation,
		limitOp: func(l *limit) Op {
			return func(ctx context.Context, worker, _ int, rec *Recorder) {
				email := stripe.user(worker).Email
				start := time.Now()
				recordLimit(rec, start, l.newKey(withOwner(ctx, email), email, uuid.NewString()))
			}
		},
		name:   name,
		stripe: stripe,
	}
}

// recoveryAPIOp is a request that fails on purpose after creating its ride
// (raise_error=true, answered 500), then its retry with the same key, which
// resumes there and succeeds (201). Each counts as a request.
func recoveryAPIOp(stripe *stripeStack) func(client *apiclient.Client) Op {
	return func(client *apiclient.Client) Op {
		return func(ctx context.Context, worker, _ int, rec *Recorder) {
			email, key := stripe.user(worker).Email, uuid.NewString()
			start := time.Now()
			ans, err := postRide(ctx, client, email, key, true)
			recordAnswer(rec, start, ans, err, http.StatusInternalServerError, false)
			start = time.Now()
			ans, err = postRide(ctx, client, email, key, false)
			recordAnswer(rec, start, ans, err, http.StatusCreated, false)
		}
	}
}

// recoveryLimitOp is recoveryAPIOp's statements.
func recoveryLimitOp(stripe *stripeStack) func(l *limit) Op {
	return func(l *limit) Op {
		return func(ctx context.Context, worker, _ int, rec *Recorder) {
			email, key := stripe.user(worker).Email, uuid.NewString()
			ctx = withOwner(ctx, email)
			start := time.Now()
			err := l.failure(ctx, email, key)
			recordLimit(rec, start, err)
			if err != nil {
				return
			}
			start = time.Now()
			recordLimit(rec, start, l.recovery(ctx, email, key))
		}
	}
}

// replaySet is the finished keys that the replays scenario asks for again:
// keysPerUser keys of each user, made through the API in setup. Worker w
// replays the keys of user w in turn.
type replaySet struct {
	keysPerUser int
	stripe      *stripeStack
}

// key is the value of user's k-th key.
func (r *replaySet) key(user, k int) string {
	return fmt.Sprintf("bench-replay-%02d-%06d", user, k%r.keysPerUser)
}

// setup finishes every key through the API, each user's in a goroutine.
func (r *replaySet) setup(ctx context.Context, client *apiclient.Client) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for u, user := range r.stripe.users {
		wg.Go(func() {
			for k := range r.keysPerUser {
				ans, err := postRide(ctx, client, user.Email, r.key(u, k), false)
				if err == nil && ans.Status != http.StatusCreated {
					err = fmt.Errorf("want 201, got %d: %s", ans.Status, ans.Body)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("finishing key %s: %w", r.key(u, k), err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// apiOp asks the API again for one of the worker's finished keys: it must
// answer 201 from the stored response, marked as replayed.
func (r *replaySet) apiOp(client *apiclient.Client) Op {
	return func(ctx context.Context, worker, iteration int, rec *Recorder) {
		u := worker % len(r.stripe.users)
		start := time.Now()
		ans, err := postRide(ctx, client, r.stripe.users[u].Email, r.key(u, iteration), false)
		recordAnswer(rec, start, ans, err, http.StatusCreated, true)
	}
}

// limitOp is apiOp's statement.
func (r *replaySet) limitOp(l *limit) Op {
	return func(ctx context.Context, worker, iteration int, rec *Recorder) {
		u := worker % len(r.stripe.users)
		email := r.stripe.users[u].Email
		start := time.Now()
		recordLimit(rec, start, l.replay(withOwner(ctx, email), email, r.key(u, iteration)))
	}
}
