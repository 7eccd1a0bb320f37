package dbospeer

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// fixture is a peer on a database of its own (commits and concurrency
// matter, and DBOS writes through its own connections), with the Stripe
// fake behind it and its pool's statements counted.
type fixture struct {
	client      *http.Client
	counter     *statementCounter
	databaseURL string
	fake        *stripefake.Server
	pool        *pgxpool.Pool // the test's own, for fixtures and checks
	stripe      *stripeclient.Client
	stripeURL   string

	// The peer running now, and its server's URL.
	peer   *Peer
	server *httptest.Server
	url    string
}

// newFixture starts a peer for the duration of tb. The peer reaches the
// Stripe fake through wrap, if set.
func newFixture(tb testing.TB, wrap func(http.Handler) http.Handler) *fixture {
	tb.Helper()
	ctx := context.Background()
	databaseURL := dbtest.NewDatabaseURL(tb)
	pool, err := db.NewPool(ctx, databaseURL, 0)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)

	fake := stripefake.New(stripefake.Config{Logger: slog.New(slog.DiscardHandler)})
	var handler http.Handler = fake
	if wrap != nil {
		handler = wrap(fake)
	}
	stripeServer := httptest.NewServer(handler)
	tb.Cleanup(stripeServer.Close)
	stripe, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: stripeServer.URL, APIKey: stripefaketest.APIKey})
	require.NoError(tb, err)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	f := &fixture{
		client:      &http.Client{Transport: transport},
		counter:     &statementCounter{},
		databaseURL: databaseURL,
		fake:        fake,
		pool:        pool,
		stripe:      stripe,
		stripeURL:   stripeServer.URL,
	}
	f.start(tb)
	tb.Cleanup(func() {
		if f.peer != nil {
			f.server.Close()
			require.NoError(tb, f.peer.Close(ctx))
		}
	})
	return f
}

// start starts a peer on the fixture's database and Stripe fake, and
// serves it.
func (f *fixture) start(tb testing.TB) {
	tb.Helper()
	peer, err := New(context.Background(), &Config{
		DatabaseURL:  f.databaseURL,
		StripeURL:    f.stripeURL,
		StripeKey:    stripefaketest.APIKey,
		PoolMaxConns: 16,
		Tracer:       f.counter,
	})
	require.NoError(tb, err)
	f.peer, f.server = peer, httptest.NewServer(peer.Handler())
	f.url = f.server.URL
}

// stop stops the peer within timeout, then its server (which waits for
// the requests in flight), and returns Close's error.
func (f *fixture) stop(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := f.peer.Close(ctx)
	f.server.Close()
	f.peer = nil
	return err
}

// newUser returns a rider whose Stripe customer, made with card source
// (tok_visa, tok_chargeCustomerFail), exists in the fake.
func (f *fixture) newUser(tb testing.TB, source string) *db.User {
	tb.Helper()
	ctx := context.Background()
	email := "rider-" + uuid.NewString() + "@example.com"
	customerID, err := f.stripe.CustomerCreate(ctx, email, source)
	require.NoError(tb, err)
	return testfactory.User(ctx, tb, f.pool, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID})
}

// validForm is a ride request's valid parameters.
var validForm = url.Values{"origin_lat": {"45.5"}, "origin_lon": {"-73.6"}, "target_lat": {"45.6"}, "target_lon": {"-73.5"}}

// post sends POST /rides as email with key and form, and returns the
// status and body.
func (f *fixture) post(tb testing.TB, email, key string, form url.Values) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/rides", strings.NewReader(form.Encode()))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if email != "" {
		req.Header.Set("Authorization", email)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := f.client.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, body
}

// charges returns the fake's charges of customer.
func (f *fixture) charges(customer string) []stripefake.Charge {
	var found []stripefake.Charge
	for _, c := range f.fake.Charges() {
		if c.Customer == customer {
			found = append(found, c)
		}
	}
	return found
}

// storedRide is a ride row of the peer's, with its audit records.
type storedRide struct {
	id             int64
	stripeChargeID *string
	audits         int
}

// rides returns the peer's rides of user, with their count of audit
// records ride.created.
func (f *fixture) rides(tb testing.TB, user *db.User) []storedRide {
	tb.Helper()
	rows, err := f.pool.Query(context.Background(), `
		SELECT r.id, r.stripe_charge_id,
		       (SELECT count(*) FROM `+Schema+`.audit_records a
		        WHERE a.resource_type = 'ride' AND a.resource_id = r.id AND a.action = 'ride.created' AND a.user_id = r.user_id)
		FROM `+Schema+`.rides r WHERE r.user_id = $1 ORDER BY r.id`, user.ID)
	require.NoError(tb, err)
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storedRide, error) {
		var r storedRide
		return r, row.Scan(&r.id, &r.stripeChargeID, &r.audits)
	})
	require.NoError(tb, err)
	return found
}

// newKey returns a fresh idempotency key.
func newKey() string {
	return "key-" + uuid.NewString()
}

func TestPeer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)

	t.Run("NewKeyChargesOnceAndReplaysItsBytes", func(t *testing.T) {
		t.Parallel()
		user := f.newUser(t, "tok_visa")
		key := newKey()

		status, first := f.post(t, user.Email, key, validForm)
		require.Equal(t, http.StatusCreated, status, "%s", first)
		var body createdBody
		require.NoError(t, json.Unmarshal(first, &body))
		require.Equal(t, messageOK, body.Message)
		require.NotNil(t, body.Ride.StripeChargeID)
		require.Equal(t, 45.5, body.Ride.OriginLat)
		require.Equal(t, -73.5, body.Ride.TargetLon)

		charges := f.charges(user.StripeCustomerID)
		require.Len(t, charges, 1)
		require.Equal(t, *body.Ride.StripeChargeID, charges[0].ID)
		require.Equal(t, int64(chargeAmount), charges[0].Amount)
		require.Equal(t, stripeIdempotencyKey(workflowID(user.ID, key)), charges[0].IdempotencyKey)
		require.Equal(t, []storedRide{{id: body.Ride.ID, stripeChargeID: body.Ride.StripeChargeID, audits: 1}}, f.rides(t, user))

		status, again := f.post(t, user.Email, key, validForm)
		require.Equal(t, http.StatusCreated, status)
		require.Equal(t, string(first), string(again))
		require.Len(t, f.charges(user.StripeCustomerID), 1)
		require.Len(t, f.rides(t, user), 1)

		// Another key of the same user is another ride.
		status, other := f.post(t, user.Email, newKey(), validForm)
		require.Equal(t, http.StatusCreated, status, "%s", other)
		require.Len(t, f.charges(user.StripeCustomerID), 2)
	})

	t.Run("ConcurrentRequestsWithOneKeyChargeOnce", func(t *testing.T) {
		t.Parallel()
		user := f.newUser(t, "tok_visa")
		key := newKey()
		const n = 20
		statuses := make([]int, n)
		bodies := make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { statuses[i], bodies[i] = f.post(t, user.Email, key, validForm) })
		}
		wg.Wait()
		for i := range n {
			require.Equal(t, http.StatusCreated, statuses[i], "%s", bodies[i])
			require.Equal(t, string(bodies[0]), string(bodies[i]))
		}
		require.Len(t, f.charges(user.StripeCustomerID), 1)
		require.Len(t, f.rides(t, user), 1)
	})

	t.Run("DeclinedCardAnswers402AndReplaysIt", func(t *testing.T) {
		t.Parallel()
		user := f.newUser(t, "tok_chargeCustomerFail")
		key := newKey()
		status, first := f.post(t, user.Email, key, validForm)
		require.Equal(t, http.StatusPaymentRequired, status, "%s", first)
		var details problem
		require.NoError(t, json.Unmarshal(first, &details))
		require.Equal(t, http.StatusPaymentRequired, details.Status)
		require.True(t, strings.HasPrefix(details.Detail, "Error from payment processor: "), details.Detail)

		status, again := f.post(t, user.Email, key, validForm)
		require.Equal(t, http.StatusPaymentRequired, status)
		require.Equal(t, string(first), string(again))
		require.Len(t, f.charges(user.StripeCustomerID), 1) // the declined one, made once
		rides := f.rides(t, user)
		require.Len(t, rides, 1)
		require.Nil(t, rides[0].stripeChargeID)
	})

	t.Run("BadRequestsAreAnsweredBeforeAnyWork", func(t *testing.T) {
		t.Parallel()
		user := f.newUser(t, "tok_visa")
		missing := url.Values{"origin_lat": {"0"}, "origin_lon": {"0"}, "target_lat": {"0"}}
		outOfRange := url.Values{"origin_lat": {"91"}, "origin_lon": {"0"}, "target_lat": {"0"}, "target_lon": {"0"}}
		for _, tc := range []struct {
			name   string
			email  string
			key    string
			form   url.Values
			status int
		}{
			{"NoCredentials", "", newKey(), validForm, http.StatusUnauthorized},
			{"UnknownRider", "nobody-" + uuid.NewString() + "@example.com", newKey(), validForm, http.StatusUnauthorized},
			{"NoKey", user.Email, "", validForm, http.StatusBadRequest},
			{"ShortKey", user.Email, "short", validForm, http.StatusBadRequest},
			{"MissingParameter", user.Email, newKey(), missing, http.StatusUnprocessableEntity},
			{"LatitudeOutOfRange", user.Email, newKey(), outOfRange, http.StatusUnprocessableEntity},
		} {
			status, body := f.post(t, tc.email, tc.key, tc.form)
			require.Equal(t, tc.status, status, "%s: %s", tc.name, body)
			var details problem
			require.NoError(t, json.Unmarshal(body, &details), tc.name)
			require.Equal(t, tc.status, details.Status, tc.name)
		}
		require.Empty(t, f.charges(user.StripeCustomerID))
		require.Empty(t, f.rides(t, user))
	})
}

// TestPeerChargeAnswerLost loses Stripe's answer to the first charge
// request: the charge's step retries it with the same Stripe idempotency
// key, and Stripe's replay of the charge finishes the ride, charged once.
func TestPeerChargeAnswerLost(t *testing.T) {
	t.Parallel()
	var lost atomic.Bool
	f := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/v1/charges" || !lost.CompareAndSwap(false, true) {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r) // charged, the answer lost
			http.Error(w, `{"error":{"type":"api_error","message":"lost"}}`, http.StatusInternalServerError)
		})
	})
	user := f.newUser(t, "tok_visa")

	status, body := f.post(t, user.Email, newKey(), validForm)
	require.Equal(t, http.StatusCreated, status, "%s", body)
	require.True(t, lost.Load())
	charges := f.charges(user.StripeCustomerID)
	require.Len(t, charges, 1)
	var created createdBody
	require.NoError(t, json.Unmarshal(body, &created))
	require.Equal(t, charges[0].ID, *created.Ride.StripeChargeID)
}

// TestPeerRecoversWorkflowCutOffMidCharge stops the peer while a
// workflow waits on Stripe (shutdown interrupts the charge's step, which
// leaves the workflow pending), then lets that charge through; the next peer
// on the database recovers the workflow from its last checkpoint (the
// ride inserted), charges again with the same Stripe idempotency key, which
// Stripe replays, and the key answers 201: one ride, one charge.
func TestPeerRecoversWorkflowCutOffMidCharge(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	var held atomic.Bool
	f := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/charges" && held.CompareAndSwap(false, true) {
				close(arrived)
				<-release
			}
			next.ServeHTTP(w, r)
		})
	})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the fixture's cleanup, which waits for the fake's requests
	user := f.newUser(t, "tok_visa")
	key := newKey()

	cutOff := make(chan int)
	go func() {
		status, _ := f.post(t, user.Email, key, validForm)
		cutOff <- status
	}()
	<-arrived
	require.NoError(t, f.stop(5*time.Second))
	require.Equal(t, http.StatusServiceUnavailable, <-cutOff)
	releaseOnce() // the first charge goes on to the fake; its answer goes nowhere

	f.start(t)
	status, body := f.post(t, user.Email, key, validForm)
	require.Equal(t, http.StatusCreated, status, "%s", body)
	charges := f.charges(user.StripeCustomerID)
	require.Len(t, charges, 1)
	var created createdBody
	require.NoError(t, json.Unmarshal(body, &created))
	require.Equal(t, charges[0].ID, *created.Ride.StripeChargeID)
	require.Equal(t, []storedRide{{id: created.Ride.ID, stripeChargeID: created.Ride.StripeChargeID, audits: 1}}, f.rides(t, user))
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	valid := Config{DatabaseURL: dbtest.DatabaseURL(), StripeURL: "http://127.0.0.1:1", StripeKey: "sk_test_x"}
	for name, mutate := range map[string]func(*Config){
		"NoDatabaseURL":   func(c *Config) { c.DatabaseURL = "" },
		"NoStripeKey":     func(c *Config) { c.StripeKey = "" },
		"StripeURLNotURL": func(c *Config) { c.StripeURL = "127.0.0.1:4242" },
		"OneConnection":   func(c *Config) { c.PoolMaxConns = 1 },
		"NegativePoll":    func(c *Config) { c.ResultPollInterval = -1 },
	} {
		config := valid
		mutate(&config)
		_, err := New(context.Background(), &config)
		require.ErrorContains(t, err, "dbospeer: ", name)
	}
	_, err := New(context.Background(), nil)
	require.ErrorContains(t, err, "DatabaseURL is required")
}

// statementCounter counts the statements sent on the peer's pool, DBOS's
// included: each one round trip once pgx has prepared it (a connection
// prepares a statement once, so a warmed-up pool prepares none).
type statementCounter struct {
	statements atomic.Int64

	mu        sync.Mutex
	recording bool
	recorded  []string
}

// record starts recording the statements' SQL (on), or stops and returns
// what it recorded.
func (c *statementCounter) record(on bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	recorded := c.recorded
	c.recording, c.recorded = on, nil
	return recorded
}

// count counts a statement, and records its SQL if asked to.
func (c *statementCounter) count(sql string) {
	c.statements.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recording {
		c.recorded = append(c.recorded, sql)
	}
}

var (
	_ pgx.QueryTracer   = (*statementCounter)(nil)
	_ pgx.BatchTracer   = (*statementCounter)(nil)
	_ pgx.PrepareTracer = (*statementCounter)(nil)
)

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.count(data.SQL)
	return ctx
}

func (*statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.count("(batch)")
	return ctx
}

func (*statementCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (*statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *statementCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	c.count("(prepare) " + data.SQL)
	return ctx
}

func (*statementCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
