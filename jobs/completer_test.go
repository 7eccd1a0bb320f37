package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

func TestCompleter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		fake     *stripefake.Server
		now      time.Time // the database's now(), frozen in tx
		outcomes []string
		stripe   *stripeclient.Client
		tx       pgx.Tx
		user     *db.User
	}

	setup := func(t *testing.T) (*Completer, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
		stripe := ridestest.NewStripe(t, baseURL)
		bundle := &testBundle{
			fake:   fake,
			now:    completerDBNow(ctx, t, tx),
			stripe: stripe,
			tx:     tx,
			user:   completerUser(ctx, t, tx, stripe, "tok_visa"),
		}
		completer := completerNew(t, tx, ridestest.NewCreator(t, db.Savepoint{Tx: tx}, nil, stripe), &CompleterConfig{
			Logger:      completerTestLogger(t),
			OutcomeFunc: func(outcome string) { bundle.outcomes = append(bundle.outcomes, outcome) },
		})
		return completer, bundle
	}

	// abandoned returns the options of a key that the completer must take:
	// created 301 s ago, last run 61 s ago, unlocked, at started.
	abandoned := func(bundle *testBundle) *testfactory.IdempotencyKeyOpts {
		return &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(bundle.now.Add(-301 * time.Second)),
			LastRunAt: testfactory.Ptr(bundle.now.Add(-61 * time.Second)),
		}
	}

	reload := func(t *testing.T, bundle *testBundle, key *db.IdempotencyKey) *db.IdempotencyKey {
		t.Helper()
		key, err := db.New().IdempotencyKeyGetByID(ctx, bundle.tx, key.ID)
		require.NoError(t, err)
		return key
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		completer := completerNew(t, nil, ridestest.NewCreator(t, nil, nil, nil), nil)
		require.Equal(t, CompleterBatchSizeDefault, completer.config.BatchSize)
		require.Equal(t, CompleterGraceDefault, completer.config.Grace)
		require.Equal(t, CompleterIntervalDefault, completer.config.Interval)
		require.Equal(t, CompleterLastRunThresholdDefault, completer.config.LastRunThreshold)
		require.Equal(t, idempotency.LockTimeoutDefault, completer.lockTimeout)
		require.Equal(t, CompleterMaxBackoffDoublingsDefault, completer.config.MaxBackoffDoublings)
		require.Equal(t, CompleterQueryTimeoutDefault, completer.config.QueryTimeout)
	})

	t.Run("TakesTheEnginesLockTimeout", func(t *testing.T) {
		t.Parallel()
		engine, err := idempotency.NewEngine(nil, &idempotency.EngineConfig{LockTimeout: 7 * time.Second})
		require.NoError(t, err)
		creator, err := rides.NewCreator(nil, engine, nil, nil)
		require.NoError(t, err)
		require.Equal(t, 7*time.Second, completerNew(t, nil, creator, nil).lockTimeout)
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		creator := ridestest.NewCreator(t, nil, nil, nil)
		for _, tt := range []struct {
			config *CompleterConfig
			want   string
		}{
			{&CompleterConfig{BatchSize: -1}, "completer: BatchSize must be between 1 and 2147483647, got -1"},
			{&CompleterConfig{Grace: -time.Second}, "Grace"},
			{&CompleterConfig{Interval: -time.Second}, "Interval"},
			{&CompleterConfig{LastRunThreshold: -time.Second}, "LastRunThreshold"},
			{&CompleterConfig{MaxBackoffDoublings: 31}, "MaxBackoffDoublings"},
			{&CompleterConfig{QueryTimeout: -time.Second}, "QueryTimeout"},
		} {
			_, err := NewCompleter(nil, creator.Engine(), tt.config)
			require.ErrorContains(t, err, tt.want)
		}
		_, err := NewCompleter(nil, nil, nil)
		require.ErrorContains(t, err, "engine")
	})

	t.Run("PushesThroughAbandonedKey", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, abandoned(bundle))

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 1, NumFinished: 1}, res)
		require.Equal(t, []string{CompleterOutcomeFinished}, bundle.outcomes)

		key = reload(t, bundle, key)
		require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
		require.Equal(t, int32(http.StatusCreated), *key.ResponseCode)
		charges := bundle.fake.Charges()
		require.Len(t, charges, 1)
		require.Equal(t, strconv.FormatInt(key.ID, 10), charges[0].Metadata[rides.MetadataIdempotencyKeyID])
	})

	t.Run("FinishesKeyWithDeclinedCard", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		user := completerUser(ctx, t, bundle.tx, bundle.stripe, "tok_chargeCustomerFail")
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, user, abandoned(bundle))

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 1, NumFinished: 1}, res, "a stored 402 is a definitive response")

		key = reload(t, bundle, key)
		require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
		require.Equal(t, int32(http.StatusPaymentRequired), *key.ResponseCode)
	})

	t.Run("SurvivesStripeFailure", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		bundle.fake.SetFailureRates(1, 0)
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, abandoned(bundle))

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 1, NumUnfinished: 1}, res)
		require.Equal(t, []string{CompleterOutcomeUnfinished}, bundle.outcomes)

		key = reload(t, bundle, key)
		require.Equal(t, rides.RecoveryPointRideCreated, key.RecoveryPoint, "the ride's phase committed, the charge's did not")
		require.Nil(t, key.LockedAt)
		require.Nil(t, key.LockToken)
		require.Empty(t, bundle.fake.Charges())
	})

	// Keys of both workflows, abandoned at each of their recovery points,
	// all finish, each through its own workflow.
	t.Run("DrivesEveryWorkflowAtEveryRecoveryPoint", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		queries := db.New()
		var keys []*db.IdempotencyKey

		// The ride workflow: at started, at ride_created (its ride
		// inserted), at charge_created (its ride charged).
		for _, point := range []string{idempotency.RecoveryPointStarted, rides.RecoveryPointRideCreated, rides.RecoveryPointChargeCreated} {
			opts := abandoned(bundle)
			opts.RecoveryPoint = &point
			key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)
			if point != idempotency.RecoveryPointStarted {
				rideOpts := &testfactory.RideOpts{IdempotencyKeyID: &key.ID}
				if point == rides.RecoveryPointChargeCreated {
					rideOpts.StripeChargeID = testfactory.Ptr(completerCharge(ctx, t, bundle.stripe, bundle.user))
				}
				testfactory.Ride(ctx, t, bundle.tx, bundle.user, rideOpts)
			}
			keys = append(keys, key)
		}
		// The cancel workflow, of charged rides: at started, and at
		// ride_claimed (its claim inserted).
		for _, point := range []string{idempotency.RecoveryPointStarted, rides.RecoveryPointRideClaimed} {
			ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{
				StripeChargeID: testfactory.Ptr(completerCharge(ctx, t, bundle.stripe, bundle.user)),
			})
			opts := abandoned(bundle)
			opts.RecoveryPoint = &point
			opts.RequestParams = json.RawMessage(fmt.Sprintf(`{"ride_id": %d, "reason": "weather"}`, ride.ID))
			opts.RequestPath = testfactory.Ptr(rides.CancelPath(ride.ID))
			opts.Workflow = testfactory.Ptr(rides.WorkflowCancel)
			key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)
			if point == rides.RecoveryPointRideClaimed {
				_, err := queries.RideCancellationInsert(ctx, bundle.tx, &db.RideCancellationInsertParams{
					IdempotencyKeyID: &key.ID, Reason: testfactory.Ptr("weather"), RideID: ride.ID, UserID: bundle.user.ID,
				})
				require.NoError(t, err)
			}
			keys = append(keys, key)
		}

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: len(keys), NumFinished: len(keys)}, res)

		for i, key := range keys {
			key = reload(t, bundle, key)
			require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint, "key %d", i)
			want := int32(http.StatusCreated)
			if key.Workflow == rides.WorkflowCancel {
				want = http.StatusOK
				cancellation, err := queries.RideCancellationGetByIdempotencyKeyID(ctx, bundle.tx, &key.ID)
				require.NoError(t, err)
				require.NotNil(t, cancellation.CancelledAt)
			}
			require.Equal(t, want, *key.ResponseCode, "key %d: %s", i, key.ResponseBody)
		}
		require.Len(t, bundle.fake.Charges(), 5, "one charge made for each ride key, and the two cancelled rides'")
		require.Len(t, bundle.fake.Refunds(), 2)
		var numReceipts, numCancellationReceipts int
		require.NoError(t, bundle.tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE job_name = $1), count(*) FILTER (WHERE job_name = $2) FROM staged_jobs`,
			rides.JobNameSendRideReceipt, rides.JobNameSendCancellationReceipt).Scan(&numReceipts, &numCancellationReceipts))
		require.Equal(t, []int{3, 2}, []int{numReceipts, numCancellationReceipts})
	})

	// A key of a workflow this binary does not know is skipped, counted and
	// left as it was; the other keys of the pass are driven.
	t.Run("SkipsUnknownWorkflow", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		opts := abandoned(bundle)
		opts.Workflow = testfactory.Ptr("POST /rides/{id}/upgrade")
		opts.RequestPath = testfactory.Ptr("/rides/1/upgrade")
		unknown := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)
		known := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, abandoned(bundle))

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 2, NumFinished: 1, NumSkipped: 1}, res)
		require.ElementsMatch(t, []string{CompleterOutcomeSkippedUnknownWorkflow, CompleterOutcomeFinished}, bundle.outcomes)
		require.Equal(t, *unknown, *reload(t, bundle, unknown), "never driven, not even locked")
		require.Equal(t, idempotency.RecoveryPointFinished, reload(t, bundle, known).RecoveryPoint)
		require.Len(t, bundle.fake.Charges(), 1)
	})

	t.Run("IgnoresKeysNotOldEnough", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		fourMinutesAgo := bundle.now.Add(-4 * time.Minute)
		testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: &fourMinutesAgo,
			LastRunAt: &fourMinutesAgo,
		})

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{}, res)
	})

	t.Run("IgnoresKeysRunRecently", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		opts := abandoned(bundle)
		opts.LastRunAt = testfactory.Ptr(bundle.now.Add(-59 * time.Second))
		testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{}, res)
	})

	t.Run("IgnoresFinishedKeys", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		opts := abandoned(bundle) // old enough on every other count
		opts.RecoveryPoint = testfactory.Ptr(idempotency.RecoveryPointFinished)
		opts.ResponseCode = testfactory.Ptr(int32(http.StatusCreated))
		opts.ResponseBody = json.RawMessage(`{}`)
		testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{}, res)
	})

	t.Run("IgnoresKeysLockedByLiveRequest", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		opts := abandoned(bundle)
		opts.LockedAt = testfactory.Ptr(bundle.now.Add(-idempotency.LockTimeoutDefault + time.Second))
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{}, res)
		require.Equal(t, key.LockToken, reload(t, bundle, key).LockToken, "the live request keeps its lock")
	})

	t.Run("DrivesStaleLockedKey", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		opts := abandoned(bundle)
		opts.LockedAt = testfactory.Ptr(bundle.now.Add(-idempotency.LockTimeoutDefault - time.Second))
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 1, NumFinished: 1}, res)

		key = reload(t, bundle, key)
		require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
		require.Nil(t, key.LockedAt)
		require.Len(t, bundle.fake.Charges(), 1)
	})

	t.Run("BacksOffKeysThatKeepFailing", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)
		threeMinutesAgo := bundle.now.Add(-3 * time.Minute)
		// Run three times: left alone for 60 s × 2² = 240 s after its last run.
		failing := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(bundle.now.Add(-time.Hour)),
			LastRunAt: &threeMinutesAgo,
			RunCount:  testfactory.Ptr(int32(3)),
		})
		// Run once: left alone for 60 s only.
		fresh := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(bundle.now.Add(-time.Hour)),
			LastRunAt: &threeMinutesAgo,
		})

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{NumFound: 1, NumFinished: 1}, res)
		require.Equal(t, idempotency.RecoveryPointStarted, reload(t, bundle, failing).RecoveryPoint)
		require.Equal(t, idempotency.RecoveryPointFinished, reload(t, bundle, fresh).RecoveryPoint)
	})

	t.Run("NoOpOnEmptyDatabase", func(t *testing.T) {
		t.Parallel()
		completer, bundle := setup(t)

		res, err := completer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &completerRunOnceResult{}, res)
		require.Empty(t, bundle.outcomes)
		require.Zero(t, bundle.fake.ChargeRequests())
	})

	t.Run("StartDrivesKeysAndReturnsWhenCancelled", func(t *testing.T) {
		t.Parallel()
		_, bundle := setup(t)
		key := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, abandoned(bundle))

		// The completer of setup reports into bundle.outcomes; this one
		// signals the test, which must not use tx until Start is done.
		driven := make(chan string, 1)
		completer := completerNew(t, bundle.tx, ridestest.NewCreator(t, db.Savepoint{Tx: bundle.tx}, nil, bundle.stripe), &CompleterConfig{
			Interval:    time.Hour, // after its one key the completer sleeps until cancelled
			Logger:      completerTestLogger(t),
			OutcomeFunc: func(outcome string) { driven <- outcome },
		})

		startCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		require.NoError(t, completer.Start(startCtx))

		require.Equal(t, CompleterOutcomeFinished, <-driven)
		cancel()
		requireStops(t, completer.Stop)
		require.Equal(t, idempotency.RecoveryPointFinished, reload(t, bundle, key).RecoveryPoint)
	})
}

// TestCompleterOutcome checks how each answer of Engine.Resume counts.
func TestCompleterOutcome(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		resp *idempotency.Response
		err  error
		want string
	}{
		{"Created", &idempotency.Response{Status: http.StatusCreated}, nil, CompleterOutcomeFinished},
		{"StoredDecline", &idempotency.Response{Status: http.StatusPaymentRequired}, nil, CompleterOutcomeFinished},
		{"Replayed", &idempotency.Response{Status: http.StatusCreated, Replayed: true}, nil, CompleterOutcomeConflict},
		{"PaymentUnavailable", nil, fmt.Errorf("%w: timeout", rides.ErrPaymentUnavailable), CompleterOutcomeUnfinished},
		{"SimulatedFailure", nil, rides.ErrSimulatedFailure, CompleterOutcomeUnfinished},
		{"RequestInProgress", nil, idempotency.ErrRequestInProgress, CompleterOutcomeConflict},
		{"Conflict", nil, fmt.Errorf("%w: 40001", idempotency.ErrConflict), CompleterOutcomeConflict},
		{"LockLost", nil, idempotency.ErrLockLost, CompleterOutcomeConflict},
		{"ParamsMismatch", nil, idempotency.ErrParamsMismatch, CompleterOutcomeError},
		{"ForeignIndeterminate", nil, fmt.Errorf("refund: %w: 500", idempotency.ErrForeignIndeterminate), CompleterOutcomeUnfinished},
		{"RidePending", nil, rides.ErrRidePending, CompleterOutcomeUnfinished},
		{"UnknownWorkflow", nil, fmt.Errorf("key 7: %w %q", idempotency.ErrUnknownWorkflow, "POST /v2"), CompleterOutcomeSkippedUnknownWorkflow},
		{"Other", nil, errors.New("connection refused"), CompleterOutcomeError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, completerOutcome(tt.resp, tt.err))
		})
	}
}

// TestCompleterConcurrent runs two completers at once over the same
// abandoned keys, on a database of its own where their transactions
// commit: each key is charged and finished exactly once.
func TestCompleterConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const numKeys = 20

	pool := dbtest.NewDatabase(t)
	fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, baseURL)
	user := completerUser(ctx, t, pool, stripe, "tok_visa")
	now := completerDBNow(ctx, t, pool)
	keyIDs := make(map[string]bool, numKeys)
	for i := range numKeys {
		key := testfactory.IdempotencyKey(ctx, t, pool, user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(now.Add(-time.Hour + time.Duration(i)*time.Second)),
			LastRunAt: testfactory.Ptr(now.Add(-time.Hour)),
		})
		keyIDs[strconv.FormatInt(key.ID, 10)] = true
	}

	creator := ridestest.NewCreator(t, pool, nil, stripe)
	completers := []*Completer{
		completerNew(t, pool, creator, &CompleterConfig{Logger: completerTestLogger(t)}),
		completerNew(t, pool, creator, &CompleterConfig{Logger: completerTestLogger(t)}),
	}
	results := make([]*completerRunOnceResult, len(completers))
	errs := make([]error, len(completers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, completer := range completers {
		wg.Go(func() {
			<-start
			results[i], errs[i] = completer.runOnce(ctx)
		})
	}
	close(start)
	wg.Wait()

	var total completerRunOnceResult
	for i := range completers {
		require.NoError(t, errs[i])
		total.NumConflict += results[i].NumConflict
		total.NumError += results[i].NumError
		total.NumFinished += results[i].NumFinished
		total.NumUnfinished += results[i].NumUnfinished
	}
	require.Equal(t, numKeys, total.NumFinished, "each key counted finished once across both completers")
	require.Zero(t, total.NumError)
	require.Zero(t, total.NumUnfinished)

	charged := make(map[string]bool, numKeys)
	for _, charge := range fake.Charges() {
		id := charge.Metadata[rides.MetadataIdempotencyKeyID]
		require.False(t, charged[id], "key %s charged twice", id)
		charged[id] = true
	}
	require.Equal(t, keyIDs, charged, "one charge per key")

	var numUnfinished int
	err := pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys WHERE recovery_point <> 'finished'").Scan(&numUnfinished)
	require.NoError(t, err)
	require.Zero(t, numUnfinished)
}

// completerNew returns a completer on the engine of creator, where both
// ride workflows are registered, failing the test if config is rejected.
func completerNew(t *testing.T, exec db.DBTX, creator *rides.Creator, config *CompleterConfig) *Completer {
	t.Helper()
	completer, err := NewCompleter(exec, creator.Engine(), config)
	require.NoError(t, err)
	return completer
}

// completerCharge makes a charge of user's in the fake and returns its id.
func completerCharge(ctx context.Context, t *testing.T, stripe *stripeclient.Client, user *db.User) string {
	t.Helper()
	charge, err := stripe.ChargeCreate(ctx, &stripeclient.ChargeParams{
		Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, Customer: user.StripeCustomerID, IdempotencyKey: testfactory.KeyValue(),
	})
	require.NoError(t, err)
	return charge.ID
}

// completerUser inserts a user whose Stripe customer, created in the fake,
// pays with source.
func completerUser(ctx context.Context, t *testing.T, exec db.DBTX, stripe *stripeclient.Client, source string) *db.User {
	t.Helper()
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customerID, err := stripe.CustomerCreate(ctx, email, source)
	require.NoError(t, err)
	return testfactory.User(ctx, t, exec, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID})
}

// completerDBNow returns the database's now(): inside a test transaction,
// the time the transaction began.
func completerDBNow(ctx context.Context, t *testing.T, exec db.DBTX) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, exec.QueryRow(ctx, "SELECT now()").Scan(&now))
	return now
}

// completerTestLogger logs everything to the test's output, shown when the
// test fails or with -v.
func completerTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
