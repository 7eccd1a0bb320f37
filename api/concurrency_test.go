package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripefake"
)

// TestCreateRideConcurrent races many requests with one new key, on a
// database of its own, at both isolation levels: one ride, one charge,
// every answer 201 or 409, and a retry replays the 201.
func TestCreateRideConcurrent(t *testing.T) {
	forEachAuthMode(t, testCreateRideConcurrent)
}

func testCreateRideConcurrent(t *testing.T) {
	t.Parallel()
	const numRequests = 50

	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := dbtest.NewDatabase(t)
			bundle := setup(t, &setupOpts{exec: pool, engine: &idempotency.EngineConfig{Isolation: isolation}, api: admitAll})
			value := testfactory.KeyValue()

			start := make(chan struct{})
			recorders := make([]*httptest.ResponseRecorder, numRequests)
			var wg sync.WaitGroup
			for i := range recorders {
				wg.Go(func() {
					r := newFormRequest(bundle.authOf(bundle.user), value, validForm())
					<-start
					recorders[i] = bundle.serve(r)
				})
			}
			close(start)
			wg.Wait()

			var created *httptest.ResponseRecorder
			statuses := map[int]int{}
			for _, recorder := range recorders {
				statuses[recorder.Code]++
				switch recorder.Code {
				case http.StatusCreated:
					if created == nil {
						created = recorder
					}
					require.Equal(t, created.Body.String(), recorder.Body.String(), "every 201 shows the same ride")
				case http.StatusConflict:
					require.NotEmpty(t, recorder.Header().Get("Retry-After"))
				default:
					require.Failf(t, "unexpected status", "%d: %s", recorder.Code, recorder.Body)
				}
			}
			t.Logf("statuses: %v", statuses)
			require.NotNil(t, created, "one of the requests must get through")

			var numRides, numAudits, numReceipts int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM rides").Scan(&numRides))
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM audit_records").Scan(&numAudits))
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM staged_jobs").Scan(&numReceipts))
			require.Equal(t, 1, numRides)
			require.Equal(t, 1, numAudits)
			require.Equal(t, 1, numReceipts)
			require.Len(t, bundle.fake.Charges(), 1)
			bundle.requireRideCharged(t, bundle.user, value, nil)

			requireReplay(t, created, bundle.post(bundle.user, value, validForm()))
		})
	}
}

// TestCreateRideNoTransactionDuringCharge looks at the database while
// Stripe is being called: the key phase has committed, the key is locked,
// and none of the server's connections is in a transaction.
func TestCreateRideNoTransactionDuringCharge(t *testing.T) {
	forEachAuthMode(t, testCreateRideNoTransactionDuringCharge)
}

func testCreateRideNoTransactionDuringCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	var (
		checked      atomic.Bool
		idleInTx     int
		pointDuring  string
		lockedDuring bool
	)
	wrapStripe := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/charges" {
				err := pool.QueryRow(ctx,
					"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").
					Scan(&idleInTx)
				if err == nil {
					err = pool.QueryRow(ctx, "SELECT recovery_point, locked_at IS NOT NULL FROM idempotency_keys").Scan(&pointDuring, &lockedDuring)
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				checked.Store(true)
			}
			next.ServeHTTP(w, r)
		})
	}
	bundle := setup(t, &setupOpts{exec: pool, wrapStripe: wrapStripe, api: admitAll})
	value := testfactory.KeyValue()

	body := requireCreated(t, bundle.post(bundle.user, value, validForm()))

	require.True(t, checked.Load())
	require.Zero(t, idleInTx, "connections in a transaction during the Stripe call")
	require.Equal(t, rides.RecoveryPointRideCreated, pointDuring)
	require.True(t, lockedDuring)
	bundle.requireRideCharged(t, bundle.user, value, body)
}

// TestCreateRideDistinctKeysConcurrent sends many requests with distinct
// keys, many at a time, at both isolation levels: every one is created.
// Unrelated requests may conflict in the database (at SERIALIZABLE, their
// predicate locks share index pages); the engine retries those conflicts
// and never answers them.
func TestCreateRideDistinctKeysConcurrent(t *testing.T) {
	forEachAuthMode(t, testCreateRideDistinctKeysConcurrent)
}

func testCreateRideDistinctKeysConcurrent(t *testing.T) {
	t.Parallel()
	const (
		numRequests = 1000
		concurrency = 64
	)

	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			pool := dbtest.NewDatabase(t)
			var retries atomic.Int64
			bundle := setup(t, &setupOpts{exec: pool, api: admitAll, engine: &idempotency.EngineConfig{
				Isolation:   isolation,
				RetriedFunc: func(error) { retries.Add(1) },
			}})

			start := time.Now()
			values, answers := postDistinct(numRequests, concurrency, bundle.user, []postFunc{bundle.postAnswer})
			t.Logf("%d requests in %v, %d transactions retried", numRequests, time.Since(start), retries.Load())

			requireAllCreated(t, bundle, values, answers)
		})
	}
}

// TestCreateRideTwoProcesses runs two API processes on one database, each
// with its own pool, engine and server behind an HTTP server of its own,
// over one Stripe, at both isolation levels. Requests with one key race
// through both, while requests with distinct keys are split between them:
// the same answers as from one process.
func TestCreateRideTwoProcesses(t *testing.T) {
	forEachAuthMode(t, testCreateRideTwoProcesses)
}

func testCreateRideTwoProcesses(t *testing.T) {
	t.Parallel()
	const (
		numSameKey  = 50
		numDistinct = 200
		concurrency = 32
	)

	for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			databaseURL := dbtest.NewDatabaseURL(t)
			engine := &idempotency.EngineConfig{Isolation: isolation}
			first := setup(t, &setupOpts{exec: newPool(t, databaseURL), engine: engine, api: admitAll})
			second := first.newProcess(t, newPool(t, databaseURL), engine)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
			t.Cleanup(client.CloseIdleConnections)
			// Requests alternate between the processes.
			posts := []postFunc{serveHTTP(t, client, first), serveHTTP(t, client, second)}
			sameKey := testfactory.KeyValue()

			var (
				sameAnswers    = make([]*answer, numSameKey)
				distinctValues []string
				distinctAns    []*answer
				wg             sync.WaitGroup
			)
			start := make(chan struct{})
			for i := range sameAnswers {
				wg.Go(func() {
					<-start
					sameAnswers[i] = posts[i%len(posts)](first.user, sameKey)
				})
			}
			wg.Go(func() {
				<-start
				distinctValues, distinctAns = postDistinct(numDistinct, concurrency, first.user, posts)
			})
			close(start)
			wg.Wait()

			created := requireOneCreated(t, sameAnswers)
			first.requireRideCharged(t, first.user, sameKey, nil)
			for _, post := range posts {
				replay := post(first.user, sameKey)
				require.Equal(t, created.code, replay.code)
				require.Equal(t, created.body, replay.body)
				require.Equal(t, created.contentType, replay.contentType)
				require.Equal(t, "true", replay.replayed)
			}
			requireAllCreated(t, first, distinctValues, distinctAns)
		})
	}
}

// answer is what a POST /rides answered, in process or over HTTP.
type answer struct {
	body        string
	code        int
	contentType string
	replayed    string
	retryAfter  string
}

// postFunc posts the valid form as user, under the key value, and returns
// the answer.
type postFunc func(user *db.User, value string) *answer

// postAnswer posts to b's server in process.
func (b *testBundle) postAnswer(user *db.User, value string) *answer {
	recorder := b.post(user, value, validForm())
	return &answer{
		body:        recorder.Body.String(),
		code:        recorder.Code,
		contentType: recorder.Header().Get("Content-Type"),
		replayed:    recorder.Header().Get(apiclient.HeaderIdempotentReplayed),
		retryAfter:  recorder.Header().Get("Retry-After"),
	}
}

// serveHTTP serves b's server over HTTP for the test, and returns a
// postFunc that posts to it with client.
func serveHTTP(t *testing.T, client *http.Client, b *testBundle) postFunc {
	t.Helper()
	server := httptest.NewServer(b.server)
	t.Cleanup(server.Close)
	return func(user *db.User, value string) *answer {
		r, err := apiclient.NewRequest(context.Background(), server.URL, b.apiRide(user, value, apiclient.Form(validForm())))
		if err != nil {
			return &answer{body: err.Error()}
		}
		response, err := client.Do(r)
		if err != nil {
			return &answer{body: err.Error()}
		}
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		if err != nil {
			return &answer{body: err.Error()}
		}
		return &answer{
			body:        string(body),
			code:        response.StatusCode,
			contentType: response.Header.Get("Content-Type"),
			replayed:    response.Header.Get(apiclient.HeaderIdempotentReplayed),
			retryAfter:  response.Header.Get("Retry-After"),
		}
	}
}

// admitAll admits every client of these tests at once: they test the
// engine under concurrency, not the shedding of load (see
// cmd/rocketrides's TestRobustness/Overload).
var admitAll = &api.ServerConfig{MaxInFlight: 1024, MaxWorking: 1024}

// newProcess returns another API process over b's database and Stripe:
// its own engine, creator and server on pool, with b's users.
func (b *testBundle) newProcess(t *testing.T, pool *pgxpool.Pool, engine *idempotency.EngineConfig) *testBundle {
	return &testBundle{
		apiKeys:  b.apiKeys,
		auth:     b.auth,
		declined: b.declined,
		exec:     pool,
		fake:     b.fake,
		server:   newServer(t, pool, b.stripe, engine, &rides.CreatorConfig{AuthMode: b.auth}, admitAll),
		stripe:   b.stripe,
		user:     b.user,
	}
}

// newPool opens a pool of its own on databaseURL, closed when the test ends.
func newPool(t *testing.T, databaseURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := db.NewPool(context.Background(), databaseURL, 0)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// postDistinct posts n requests as user, each with a key of its own, at
// most concurrency at a time, in turn through each of posts, and returns
// the keys and their answers.
func postDistinct(n, concurrency int, user *db.User, posts []postFunc) ([]string, []*answer) {
	values := make([]string, n)
	for i := range values {
		values[i] = testfactory.KeyValue()
	}
	answers := make([]*answer, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				answers[i] = posts[i%len(posts)](user, values[i])
			}
		})
	}
	for i := range values {
		next <- i
	}
	close(next)
	wg.Wait()
	return values, answers
}

// requireOneCreated requires answers to one key to be 201s showing the
// same ride, or 409s, with at least one 201, and returns a 201.
func requireOneCreated(t *testing.T, answers []*answer) *answer {
	t.Helper()
	var created *answer
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.code]++
		switch a.code {
		case http.StatusCreated:
			if created == nil {
				created = a
			}
			require.Equal(t, created.body, a.body, "every 201 shows the same ride")
		case http.StatusConflict:
			require.NotEmpty(t, a.retryAfter)
		default:
			require.Failf(t, "unexpected status", "%d: %s", a.code, a.body)
		}
	}
	t.Logf("statuses: %v", statuses)
	require.NotNil(t, created, "one of the requests must get through")
	return created
}

// requireAllCreated requires every answer to be a first 201 showing its
// key's ride, and each key to be finished with one ride, charged once in
// Stripe with the ride's charge, and one receipt job.
func requireAllCreated(t *testing.T, b *testBundle, values []string, answers []*answer) {
	t.Helper()
	ctx := context.Background()
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.code]++
	}
	require.Equal(t, map[int]int{http.StatusCreated: len(values)}, statuses, "one status for all: 201")

	rows, err := b.exec.Query(ctx, `
		SELECT k.idempotency_key, k.stripe_idempotency_key, k.response_code, r.id, r.stripe_charge_id,
			(SELECT count(*) FROM staged_jobs j WHERE j.job_name = $2 AND (j.job_args->>'ride_id')::bigint = r.id)
		FROM idempotency_keys k LEFT JOIN rides r ON r.idempotency_key_id = k.id
		WHERE k.idempotency_key = ANY($1) AND k.user_id = $3`,
		values, rides.JobNameSendRideReceipt, b.user.ID)
	require.NoError(t, err)
	type keyRide struct {
		Value        string
		StripeKey    uuid.UUID
		ResponseCode *int32
		RideID       *int64
		ChargeID     *string
		NumReceipts  int64
	}
	keyRides, err := pgx.CollectRows(rows, pgx.RowToStructByPos[keyRide])
	require.NoError(t, err)
	require.Len(t, keyRides, len(values), "one row per key: one ride at most")

	chargesByKey := map[string][]stripefake.Charge{}
	for _, charge := range b.fake.Charges() {
		stripeKey := charge.Metadata[rides.MetadataIdempotencyKey]
		chargesByKey[stripeKey] = append(chargesByKey[stripeKey], charge)
	}
	bodies := make(map[string]*rides.CreatedBody, len(values))
	for i, a := range answers {
		var body rides.CreatedBody
		require.NoError(t, json.Unmarshal([]byte(a.body), &body))
		bodies[values[i]] = &body
	}
	for _, kr := range keyRides {
		require.NotNil(t, kr.ResponseCode, "key %s unfinished", kr.Value)
		require.Equal(t, int32(http.StatusCreated), *kr.ResponseCode)
		require.NotNil(t, kr.RideID, "key %s has no ride", kr.Value)
		require.NotNil(t, kr.ChargeID, "ride of key %s has no charge", kr.Value)
		charges := chargesByKey[rides.StripeIdempotencyKey(&db.IdempotencyKey{StripeIdempotencyKey: kr.StripeKey})]
		require.Len(t, charges, 1, "charges for key %s", kr.Value)
		require.Equal(t, *kr.ChargeID, charges[0].ID)
		require.Equal(t, stripefake.ChargeSucceeded, charges[0].Status)
		require.Equal(t, int64(1), kr.NumReceipts, "receipts staged for key %s", kr.Value)
		require.Equal(t, *kr.RideID, bodies[kr.Value].Ride.ID, "the 201 of key %s shows its ride", kr.Value)
	}
}
