package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Scenario names, as results.json has them.
const (
	scenarioNewKeys             = "new_keys"
	scenarioNewKeysSerializable = "new_keys_serializable"
	scenarioReplays             = "replays"
	scenarioCancels             = "cancels"
	scenarioOverload            = "overload"
)

// Isolation levels, as PHASE_ISOLATION spells them.
const (
	isolationReadCommitted = "read_committed"
	isolationSerializable  = "serializable"
)

// scenarioNames are the scenarios in the order they run.
func scenarioNames() []string {
	return []string{scenarioNewKeys, scenarioNewKeysSerializable, scenarioReplays, scenarioCancels, scenarioOverload}
}

// scenario is one kind of load, run on the API, on its limit and (for some)
// on the peer, at each of its concurrencies.
type scenario struct {
	name          string
	isolation     string
	concurrencies []int

	// freshTables empties the tables before every round of every side, so
	// that each starts from the same database.
	freshTables bool

	// peer is set if the peer runs the scenario too; bare if the bare
	// handler does (sideBare).
	peer bool
	bare bool

	// httpOp is one iteration of a worker against an HTTP side (the API,
	// the peer, named side) at url; limitOp against the limit (whose
	// replays are served over HTTP at url).
	httpOp  func(client *http.Client, url, side string, users *stripeStack) Op
	limitOp func(client *http.Client, url string, l *limit, users *stripeStack) Op

	// remaining, if set, is how many iterations the scenario can still
	// run (its supply of rides to cancel): a run starts no more.
	remaining func() int

	// setup, if set, prepares the scenario once, before its first cell,
	// with the API at apiURL and the peer, if it runs, at peerURL.
	setup func(ctx context.Context, b *bench, apiURL, peerURL string) error
}

// scenarios returns the throughput scenarios in the order they run.
func (b *bench) scenarios() []*scenario {
	replays := &replaySet{keysPerUser: b.config.replayKeysPerUser}
	return []*scenario{
		newKeysScenario(scenarioNewKeys, isolationReadCommitted, b.config.concurrencies, true),
		newKeysScenario(scenarioNewKeysSerializable, isolationSerializable, b.config.concurrencies, false),
		{
			name:          scenarioReplays,
			isolation:     isolationReadCommitted,
			concurrencies: b.config.concurrencies,
			peer:          true,
			httpOp:        replays.op,
			limitOp: func(client *http.Client, url string, _ *limit, users *stripeStack) Op {
				return replays.op(client, url, sideAPI, users)
			},
			setup: replays.setup,
		},
		{
			name:          scenarioCancels,
			isolation:     isolationReadCommitted,
			concurrencies: b.config.cancelConcurrencies,
			httpOp:        b.rides.httpOp,
			limitOp:       b.rides.limitOp,
			remaining:     b.rides.left,
			setup:         b.rides.setup,
		},
	}
}

// newKeysScenario is a fresh key on every request. At read committed the
// peer and the bare handler run it too (sideBySide is set).
func newKeysScenario(name, isolation string, concurrencies []int, sideBySide bool) *scenario {
	return &scenario{
		name:          name,
		isolation:     isolation,
		concurrencies: concurrencies,
		freshTables:   true,
		peer:          sideBySide,
		bare:          sideBySide,
		httpOp: func(client *http.Client, url, _ string, users *stripeStack) Op {
			return func(ctx context.Context, worker, _ int, rec *Recorder) {
				start := time.Now()
				ans, err := postRide(ctx, client, url, users.user(worker).email, uuid.NewString())
				recordAnswer(rec, start, ans, err, http.StatusCreated, false)
			}
		},
		limitOp: func(_ *http.Client, _ string, l *limit, users *stripeStack) Op {
			return func(ctx context.Context, worker, _ int, rec *Recorder) {
				start := time.Now()
				recordLimit(rec, start, l.newKey(ctx, users.user(worker).email, uuid.NewString()))
			}
		},
	}
}

// replaySet is the finished keys that the replays scenario asks for again:
// keysPerUser keys of each user, finished through the API (and through the
// peer, with keys of its own) in setup. Worker w replays the keys of user
// w in turn.
type replaySet struct {
	keysPerUser int
}

// key is the value of user u's k-th key on side.
func (r *replaySet) key(side string, u, k int) string {
	return fmt.Sprintf("bench-replay-%s-%03d-%06d", side, u, k%r.keysPerUser)
}

// setup finishes every key through the API and the peer, each user's in a
// goroutine.
func (r *replaySet) setup(ctx context.Context, b *bench, apiURL, peerURL string) error {
	sides := map[string]string{sideAPI: apiURL}
	if peerURL != "" {
		sides[sidePeer] = peerURL
	}
	client := newHTTPClient(len(b.stripe.users))
	defer client.CloseIdleConnections()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for side, baseURL := range sides {
		for u, user := range b.stripe.users {
			wg.Go(func() {
				for k := range r.keysPerUser {
					ans, err := postRideUntilDefinitive(ctx, client, baseURL, user.email, r.key(side, u, k))
					if err == nil && ans.status != http.StatusCreated {
						err = fmt.Errorf("want 201, got %d: %s", ans.status, ans.body)
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("finishing key %s on %s: %w", r.key(side, u, k), side, err))
						mu.Unlock()
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// op asks url again for one of the worker's finished keys of side (the
// peer has keys of its own; the replays' limit reads the API's): it must
// answer 201 from the stored response, marked as replayed (but by the
// peer: DBOS answers a known workflow id with its recorded result and has
// no such marker).
func (r *replaySet) op(client *http.Client, url, side string, users *stripeStack) Op {
	return func(ctx context.Context, worker, iteration int, rec *Recorder) {
		u := worker % len(users.users)
		start := time.Now()
		ans, err := postRide(ctx, client, url, users.users[u].email, r.key(side, u, iteration))
		recordAnswer(rec, start, ans, err, http.StatusCreated, side != sidePeer)
	}
}

// rideSupply is the charged rides that the cancels scenario cancels, made
// in setup, each cancelled once by whichever side takes it next.
type rideSupply struct {
	next  atomic.Int64
	rides []suppliedRide
}

// suppliedRide is a charged ride and its user's email.
type suppliedRide struct {
	email string
	id    int64
}

// take returns the next ride, or false when none is left.
func (s *rideSupply) take() (suppliedRide, bool) {
	i := s.next.Add(1) - 1
	if i >= int64(len(s.rides)) {
		return suppliedRide{}, false
	}
	return s.rides[i], true
}

// left is how many rides are left.
func (s *rideSupply) left() int {
	return max(len(s.rides)-int(s.next.Load()), 0)
}

// setup charges b.config.cancelRides rides through the Stripe fake and
// inserts them, charged, in one statement: rides of no key, as the reaper
// leaves them, which cancel like any charged ride.
func (s *rideSupply) setup(ctx context.Context, b *bench, _, _ string) error {
	n := b.config.cancelRides
	s.rides = make([]suppliedRide, n)
	s.next.Store(0)
	userIDs, chargeIDs := make([]int64, n), make([]string, n)
	const workers = 16
	caller := newStripeCaller(b.stripe.url, workers)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				user := b.stripe.users[i%len(b.stripe.users)]
				charge, err := caller.post(ctx, "/v1/charges", uuid.NewString(), url.Values{
					"amount": {"2000"}, "currency": {"usd"}, "customer": {user.customerID},
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				s.rides[i].email, userIDs[i], chargeIDs[i] = user.email, user.id, charge
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("charging the rides to cancel: %w", err)
	}
	rows, err := b.pool.Query(ctx, `INSERT INTO rides (origin_lat, origin_lon, target_lat, target_lon, stripe_charge_id, user_id)
		SELECT 37.7749, -122.4194, 37.8044, -122.2712, c, u FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(c, u, i)
		ORDER BY i RETURNING id`, chargeIDs, userIDs)
	if err != nil {
		return fmt.Errorf("inserting the rides to cancel: %w", err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		if err := rows.Scan(&s.rides[i].id); err != nil {
			return fmt.Errorf("reading ride id: %w", err)
		}
	}
	return rows.Err()
}

// httpOp cancels the next ride through the side at url: 200.
func (s *rideSupply) httpOp(client *http.Client, url, _ string, _ *stripeStack) Op {
	return func(ctx context.Context, _, _ int, rec *Recorder) {
		ride, ok := s.take()
		if !ok {
			return
		}
		start := time.Now()
		ans, err := cancelRide(ctx, client, url, ride.email, uuid.NewString(), ride.id)
		recordAnswer(rec, start, ans, err, http.StatusOK, false)
	}
}

// limitOp cancels the next ride in the limit's raw form.
func (s *rideSupply) limitOp(_ *http.Client, _ string, l *limit, _ *stripeStack) Op {
	return func(ctx context.Context, _, _ int, rec *Recorder) {
		ride, ok := s.take()
		if !ok {
			return
		}
		start := time.Now()
		recordLimit(rec, start, l.cancel(ctx, ride.email, uuid.NewString(), ride.id))
	}
}
