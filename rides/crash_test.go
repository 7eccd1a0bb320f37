package rides_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// crashWait bounds every wait of the crash tests on a background service,
// so that a service that never answers fails the test instead of hanging
// it.
const crashWait = 10 * time.Second

// crashPoint is a boundary where a request stops dead, as if its process
// died there.
type crashPoint struct {
	name string

	// existingKey makes the request use a key that already exists, unlocked
	// at started, so that its key phase commits alone.
	existingKey bool

	// hooks returns the crashed process's hooks: they call crash at the
	// boundary.
	hooks func(fake *stripefake.Server, crash func()) *idempotency.Hooks

	// wantPoint is the recovery point the crash leaves the key at.
	wantPoint string

	// wantRides and wantCharges are how many rides and Stripe charges exist
	// after the crash.
	wantRides   int
	wantCharges int
}

// crashAfterCommit returns hooks that crash once the phase that leaves the
// key at point has committed.
func crashAfterCommit(point string) func(*stripefake.Server, func()) *idempotency.Hooks {
	return func(_ *stripefake.Server, crash func()) *idempotency.Hooks {
		return &idempotency.Hooks{AfterCommit: crashAt(point, crash)}
	}
}

// crashBeforeCommit returns hooks that crash inside the transaction of the
// phase that takes the key to point, before it commits.
func crashBeforeCommit(point string) func(*stripefake.Server, func()) *idempotency.Hooks {
	return func(_ *stripefake.Server, crash func()) *idempotency.Hooks {
		return &idempotency.Hooks{BeforeCommit: crashAt(point, crash)}
	}
}

// crashAt is a hook that calls crash at recovery point point.
func crashAt(point string, crash func()) func(context.Context, string) error {
	return func(_ context.Context, recoveryPoint string) error {
		if recoveryPoint == point {
			crash()
		}
		return nil
	}
}

var crashPoints = []crashPoint{
	{
		name:        "AfterKeyPhase",
		existingKey: true,
		hooks:       crashAfterCommit(idempotency.RecoveryPointStarted),
		wantPoint:   idempotency.RecoveryPointStarted,
	},
	{
		name:      "AfterRidePhase",
		hooks:     crashAfterCommit(rides.RecoveryPointRideCreated),
		wantPoint: rides.RecoveryPointRideCreated,
		wantRides: 1,
	},
	{
		name: "AfterStripeCharged",
		hooks: func(fake *stripefake.Server, crash func()) *idempotency.Hooks {
			return &idempotency.Hooks{BeforePhase: func(_ context.Context, recoveryPoint string) error {
				// The charge step's phase: Stripe has answered.
				if recoveryPoint == rides.RecoveryPointRideCreated && len(fake.Charges()) > 0 {
					crash()
				}
				return nil
			}}
		},
		wantPoint:   rides.RecoveryPointRideCreated,
		wantRides:   1,
		wantCharges: 1,
	},
	{
		name:        "BeforeFinishCommits",
		hooks:       crashBeforeCommit(idempotency.RecoveryPointFinished),
		wantPoint:   rides.RecoveryPointRideCreated,
		wantRides:   1,
		wantCharges: 1,
	},
}

// crashBundle is one database shared by a crashed process and the process
// that recovers after it.
type crashBundle struct {
	// crashed is the process that dies at the crash point.
	crashed *rides.Creator
	fake    *stripefake.Server
	pool    *pgxpool.Pool
	// recovering is a process without hooks: a client's retry lands there,
	// and the completer runs there.
	recovering *rides.Creator
	stripe     *stripeclient.Client
	user       *db.User
}

func setupCrash(t *testing.T, point *crashPoint, isolation pgx.TxIsoLevel, crash func()) *crashBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, baseURL)
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customerID, err := stripe.CustomerCreate(ctx, email, "tok_visa")
	require.NoError(t, err)
	return &crashBundle{
		crashed:    ridestest.NewCreator(t, pool, &idempotency.EngineConfig{Hooks: point.hooks(fake, crash), Isolation: isolation}, stripe),
		fake:       fake,
		pool:       pool,
		recovering: ridestest.NewCreator(t, pool, &idempotency.EngineConfig{Isolation: isolation}, stripe),
		stripe:     stripe,
		user:       testfactory.User(ctx, t, pool, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID}),
	}
}

// TestCreateCrash stops a request dead at each boundary of its phases, at
// both isolation levels, and recovers the key both ways: the client's retry
// with the same key, and the completer. Either way the request ends exactly
// once: one ride, one charge, one staged receipt job that River sends once,
// and the key finished with the 201 that every later retry gets byte for
// byte.
func TestCreateCrash(t *testing.T) {
	t.Parallel()

	recoveries := []struct {
		name    string
		recover func(t *testing.T, bundle *crashBundle, req *rides.Request, key *db.IdempotencyKey) *idempotency.Response
	}{
		{"ClientRetry", recoverByRetry},
		{"Completer", recoverByCompleter},
	}

	for _, point := range crashPoints {
		for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
			for _, recovery := range recoveries {
				t.Run(point.name+"/"+string(isolation)+"/"+recovery.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					var crashed atomic.Bool
					bundle := setupCrash(t, &point, isolation, func() {
						crashed.Store(true)
						runtime.Goexit()
					})
					req := &rides.Request{
						IdempotencyKey: testfactory.KeyValue(),
						OriginIP:       netip.MustParseAddr("192.0.2.1"),
						User:           bundle.user,
					}
					if point.existingKey {
						req.IdempotencyKey = testfactory.IdempotencyKey(ctx, t, bundle.pool, bundle.user, nil).IdempotencyKey
					}

					returned := runUntilCrash(ctx, bundle.crashed, req)
					require.False(t, returned, "the request returned instead of crashing")
					require.True(t, crashed.Load())
					key := requireCrashedAt(t, bundle, req.IdempotencyKey, &point)

					first := recovery.recover(t, bundle, req, key)

					requireCreatedOnce(t, bundle, key.ID, first)
					requireReceiptSentOnce(t, bundle, key.ID)
				})
			}
		}
	}
}

// runUntilCrash runs req in a goroutine of its own and waits for it to end,
// and reports whether Create returned: false when a hook stopped the
// goroutine dead (runtime.Goexit), after its deferred calls (rollbacks) ran,
// as a dying connection's transaction rolls back.
func runUntilCrash(ctx context.Context, creator *rides.Creator, req *rides.Request) bool {
	done := make(chan struct{})
	returned := false
	go func() {
		defer close(done)
		_, _ = creator.Create(ctx, req)
		returned = true
	}()
	<-done
	return returned
}

// requireCrashedAt requires the crash to have left the key locked at
// point's recovery point, with the rides and charges that had committed
// before it and nothing after: no staged job, no response. It returns the
// key.
func requireCrashedAt(t *testing.T, bundle *crashBundle, value string, point *crashPoint) *db.IdempotencyKey {
	t.Helper()
	key := crashKey(t, bundle, value)
	require.Equal(t, point.wantPoint, key.RecoveryPoint)
	require.NotNil(t, key.LockedAt, "a dead request keeps its lock")
	require.Nil(t, key.ResponseCode)
	require.Equal(t, point.wantRides, crashCount(t, bundle, "SELECT count(*) FROM rides"))
	require.Zero(t, crashCount(t, bundle, "SELECT count(*) FROM staged_jobs"))
	require.Len(t, bundle.fake.Charges(), point.wantCharges)
	return key
}

// recoverByRetry is the client retrying with the same key: turned away
// while the dead request's lock holds, served once the lock has timed out
// (by the database's clock). It returns the retry's response.
func recoverByRetry(t *testing.T, bundle *crashBundle, req *rides.Request, key *db.IdempotencyKey) *idempotency.Response {
	t.Helper()
	ctx := context.Background()
	_, err := bundle.recovering.Create(ctx, req)
	require.ErrorIs(t, err, idempotency.ErrRequestInProgress)

	crashExec(t, bundle, "UPDATE idempotency_keys SET locked_at = now() - interval '1 hour' WHERE id = $1", key.ID)
	response, err := bundle.recovering.Create(ctx, req)
	require.NoError(t, err)
	require.False(t, response.Replayed)
	return response
}

// recoverByCompleter ages the key past the completer's grace, last-run
// threshold and lock timeout, and lets a completer drive it. It returns nil:
// the completer's response goes nowhere.
func recoverByCompleter(t *testing.T, bundle *crashBundle, _ *rides.Request, key *db.IdempotencyKey) *idempotency.Response {
	t.Helper()
	// Two hours: past the longest backoff (64 min), inside Stripe's
	// idempotency window.
	crashExec(t, bundle, `UPDATE idempotency_keys
		SET created_at = now() - interval '2 hours', last_run_at = now() - interval '2 hours', locked_at = now() - interval '2 hours'
		WHERE id = $1`, key.ID)

	outcomes := make(chan string, 1)
	completer, err := jobs.NewCompleter(bundle.pool, bundle.recovering.Engine(), &jobs.CompleterConfig{
		Interval:    time.Hour, // one pass, then idle until cancelled
		OutcomeFunc: func(outcome string) { outcomes <- outcome },
	})
	require.NoError(t, err)
	runService(t, completer, func() {
		require.Equal(t, jobs.CompleterOutcomeFinished, waitFor(t, outcomes))
	})
	return nil
}

// requireCreatedOnce requires the key to be finished with the 201 of its
// one ride, charged once in Stripe, with one receipt job staged; first (the
// retry's response, if the client recovered the key) and a later retry to
// answer the stored response byte for byte.
func requireCreatedOnce(t *testing.T, bundle *crashBundle, keyID int64, first *idempotency.Response) {
	t.Helper()
	ctx := context.Background()
	key, err := db.New().IdempotencyKeyGetByID(ctx, bundle.pool, keyID)
	require.NoError(t, err)
	require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
	require.Equal(t, int32(http.StatusCreated), *key.ResponseCode)
	require.Nil(t, key.LockedAt)

	require.Equal(t, 1, crashCount(t, bundle, "SELECT count(*) FROM rides"))
	ride, err := db.New().RideGetByIdempotencyKeyID(ctx, bundle.pool, &key.ID)
	require.NoError(t, err)
	require.NotNil(t, ride.StripeChargeID)

	stripeKey := rides.StripeIdempotencyKey(key)
	var charges []stripefake.Charge
	for _, charge := range bundle.fake.Charges() {
		if charge.Metadata[rides.MetadataIdempotencyKey] == stripeKey {
			charges = append(charges, charge)
		}
	}
	require.Len(t, charges, 1, "charges for the key in Stripe")
	require.Len(t, bundle.fake.Charges(), 1, "charges in Stripe")
	require.Equal(t, stripefake.ChargeSucceeded, charges[0].Status)
	require.Equal(t, *ride.StripeChargeID, charges[0].ID)
	require.Equal(t, bundle.user.StripeCustomerID, charges[0].Customer)

	rows, err := bundle.pool.Query(ctx, "SELECT job_args FROM staged_jobs WHERE job_name = $1", rides.JobNameSendRideReceipt)
	require.NoError(t, err)
	staged, err := pgx.CollectRows(rows, pgx.RowTo[rides.ReceiptArgs])
	require.NoError(t, err)
	require.Equal(t, []rides.ReceiptArgs{{Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, UserID: bundle.user.ID}}, staged)
	require.Equal(t, 1, crashCount(t, bundle, "SELECT count(*) FROM staged_jobs"))

	var body rides.CreatedBody
	require.NoError(t, json.Unmarshal(key.ResponseBody, &body))
	require.Equal(t, rides.MessageOK, body.Message)
	require.Equal(t, ride.ID, body.Ride.ID)
	require.Equal(t, ride.StripeChargeID, body.Ride.StripeChargeID)
	var stored bytes.Buffer
	require.NoError(t, json.Compact(&stored, key.ResponseBody))

	replay, err := bundle.recovering.Create(ctx, &rides.Request{
		IdempotencyKey: key.IdempotencyKey,
		OriginIP:       netip.MustParseAddr("192.0.2.1"),
		User:           bundle.user,
	})
	require.NoError(t, err)
	require.True(t, replay.Replayed)
	require.Equal(t, http.StatusCreated, replay.Status)
	require.Equal(t, stored.String(), string(replay.Body))
	if first != nil {
		require.Equal(t, http.StatusCreated, first.Status)
		require.Equal(t, stored.String(), string(first.Body))
	}
}

// requireReceiptSentOnce runs the enqueuer and a River worker over the
// database and requires the key's ride to have got exactly one receipt.
func requireReceiptSentOnce(t *testing.T, bundle *crashBundle, keyID int64) {
	t.Helper()
	ctx := context.Background()
	ride, err := db.New().RideGetByIdempotencyKeyID(ctx, bundle.pool, &keyID)
	require.NoError(t, err)

	mailer := &crashMailer{sent: make(chan *jobs.Receipt, 1)}
	client, err := jobs.NewRiverClient(bundle.pool, &jobs.RiverClientConfig{Mailer: mailer, Work: true})
	require.NoError(t, err)

	enqueued := make(chan int, 1)
	enqueuer, err := jobs.NewEnqueuer(bundle.pool, client, &jobs.EnqueuerConfig{
		Interval:         time.Hour,
		JobsEnqueuedFunc: func(n int) { enqueued <- n },
	})
	require.NoError(t, err)
	runService(t, enqueuer, func() {
		require.Equal(t, 1, waitFor(t, enqueued))
	})
	require.Zero(t, crashCount(t, bundle, "SELECT count(*) FROM staged_jobs"))
	require.Equal(t, 1, crashCount(t, bundle, "SELECT count(*) FROM river_job"), "the only job River can work")

	require.NoError(t, client.Start(ctx))
	receipt := waitFor(t, mailer.sent)
	stopCtx, cancel := context.WithTimeout(ctx, crashWait)
	defer cancel()
	require.NoError(t, client.Stop(stopCtx))

	require.Equal(t, ride.ID, receipt.RideID)
	require.Equal(t, bundle.user.ID, receipt.UserID)
	require.Equal(t, bundle.user.Email, receipt.Email)
	require.Equal(t, int64(rides.ChargeAmount), receipt.Amount)
	require.Len(t, mailer.Receipts(), 1)
}

// crashMailer records the receipts it sends and signals each on sent.
type crashMailer struct {
	sent chan *jobs.Receipt

	mu       sync.Mutex
	receipts []*jobs.Receipt
}

func (m *crashMailer) SendReceipt(_ context.Context, receipt *jobs.Receipt) error {
	m.mu.Lock()
	m.receipts = append(m.receipts, receipt)
	m.mu.Unlock()
	select {
	case m.sent <- receipt:
	default: // a second receipt: Receipts shows it
	}
	return nil
}

func (m *crashMailer) Receipts() []*jobs.Receipt {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*jobs.Receipt(nil), m.receipts...)
}

// crashService is a background service of package jobs.
type crashService interface {
	Start(ctx context.Context) error
	Stop()
}

// runService starts service, calls during, then stops the service and waits
// for it to finish.
func runService(t *testing.T, service crashService, during func()) {
	t.Helper()
	require.NoError(t, service.Start(context.Background()))
	defer service.Stop()
	during()
}

// waitFor receives from ch, failing the test after crashWait.
func waitFor[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(crashWait):
		require.FailNow(t, "timed out waiting for a background service")
		var zero T
		return zero
	}
}

func crashKey(t *testing.T, bundle *crashBundle, value string) *db.IdempotencyKey {
	t.Helper()
	ctx := context.Background()
	row, err := db.New().UserGetWithIdempotencyKey(ctx, bundle.pool, &db.UserGetWithIdempotencyKeyParams{Email: bundle.user.Email, IdempotencyKey: value})
	require.NoError(t, err)
	require.NotNil(t, row.KeyID)
	key, err := db.New().IdempotencyKeyGetByID(ctx, bundle.pool, *row.KeyID)
	require.NoError(t, err)
	return key
}

func crashCount(t *testing.T, bundle *crashBundle, query string) int {
	t.Helper()
	var n int
	require.NoError(t, bundle.pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}

func crashExec(t *testing.T, bundle *crashBundle, query string, args ...any) {
	t.Helper()
	tag, err := bundle.pool.Exec(context.Background(), query, args...)
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected())
}
