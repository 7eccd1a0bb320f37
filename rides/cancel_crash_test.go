package rides_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// cancelCrashPoint is a boundary of the cancel workflow where a request
// stops dead.
type cancelCrashPoint struct {
	name string

	// existingKey makes the request use a cancel key that already exists,
	// unlocked at started, so that its key phase commits alone.
	existingKey bool

	hooks func(fake *stripefake.Server, crash func()) *idempotency.Hooks

	// wantPoint is the recovery point the crash leaves the key at;
	// wantClaims and wantRefunds how many claims and Stripe refunds exist.
	wantPoint   string
	wantClaims  int
	wantRefunds int
}

var cancelCrashPoints = []cancelCrashPoint{
	{
		name:        "AfterKeyPhase",
		existingKey: true,
		hooks:       crashAfterCommit(idempotency.RecoveryPointStarted),
		wantPoint:   idempotency.RecoveryPointStarted,
	},
	{
		name:       "AfterClaimPhase",
		hooks:      crashAfterCommit(rides.RecoveryPointRideClaimed),
		wantPoint:  rides.RecoveryPointRideClaimed,
		wantClaims: 1,
	},
	{
		name: "AfterStripeRefunded",
		hooks: func(fake *stripefake.Server, crash func()) *idempotency.Hooks {
			return &idempotency.Hooks{BeforePhase: func(_ context.Context, recoveryPoint string) error {
				// The refund step's phase: Stripe has refunded.
				if recoveryPoint == rides.RecoveryPointRideClaimed && len(fake.Refunds()) > 0 {
					crash()
				}
				return nil
			}}
		},
		wantPoint:   rides.RecoveryPointRideClaimed,
		wantClaims:  1,
		wantRefunds: 1,
	},
	{
		name:        "BeforeFinishCommits",
		hooks:       crashBeforeCommit(idempotency.RecoveryPointFinished),
		wantPoint:   rides.RecoveryPointRideClaimed,
		wantClaims:  1,
		wantRefunds: 1,
	},
}

// TestCancelCrash stops a cancel request dead at each boundary of its
// phases, at both isolation levels, and recovers the key both ways: the
// client's retry with the same key, and the completer. Either way the ride
// is cancelled exactly once: one refund on Stripe, one cancellation, one
// audit record, one staged cancellation receipt, and the key finished with
// the 200 that every later retry gets byte for byte.
func TestCancelCrash(t *testing.T) {
	t.Parallel()

	recoveries := []struct {
		name    string
		recover func(t *testing.T, bundle *crashBundle, req *rides.CancelRequest, key *db.IdempotencyKey) *idempotency.Response
	}{
		{"ClientRetry", recoverCancelByRetry},
		{"Completer", recoverCancelByCompleter},
	}

	for _, point := range cancelCrashPoints {
		for _, isolation := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
			for _, recovery := range recoveries {
				t.Run(point.name+"/"+string(isolation)+"/"+recovery.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					var crashed atomic.Bool
					bundle := setupCancelCrash(t, &point, isolation, func() {
						crashed.Store(true)
						runtime.Goexit()
					})
					ride := cancelCrashRide(t, bundle)
					req := &rides.CancelRequest{
						IdempotencyKey: testfactory.KeyValue(),
						OriginIP:       netip.MustParseAddr("192.0.2.1"),
						Params:         rides.CancelParams{Reason: "storm", RideID: ride.ID},
						User:           bundle.user,
					}
					if point.existingKey {
						req.IdempotencyKey = testfactory.IdempotencyKey(ctx, t, bundle.pool, bundle.user, &testfactory.IdempotencyKeyOpts{
							RequestParams: json.RawMessage(fmt.Sprintf(`{"ride_id": %d, "reason": "storm"}`, ride.ID)),
							RequestPath:   testfactory.Ptr(rides.CancelPath(ride.ID)),
							Workflow:      testfactory.Ptr(rides.WorkflowCancel),
						}).IdempotencyKey
					}

					done := make(chan struct{})
					returned := false
					go func() {
						defer close(done)
						_, _ = bundle.crashed.Cancel(ctx, req)
						returned = true
					}()
					<-done
					require.False(t, returned, "the request returned instead of crashing")
					require.True(t, crashed.Load())
					key := requireCancelCrashedAt(t, bundle, req.IdempotencyKey, &point)

					first := recovery.recover(t, bundle, req, key)

					requireCancelledOnce(t, bundle, key.ID, ride, req, first)
				})
			}
		}
	}
}

func setupCancelCrash(t *testing.T, point *cancelCrashPoint, isolation pgx.TxIsoLevel, crash func()) *crashBundle {
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

// cancelCrashRide creates a charged ride of the bundle's user, through the
// ride workflow of the recovering process.
func cancelCrashRide(t *testing.T, bundle *crashBundle) *db.Ride {
	t.Helper()
	ctx := context.Background()
	value := testfactory.KeyValue()
	response, err := bundle.recovering.Create(ctx, &rides.Request{IdempotencyKey: value, OriginIP: netip.MustParseAddr("192.0.2.1"), User: bundle.user})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, response.Status)
	ride, err := db.New().RideGetByIdempotencyKeyID(ctx, bundle.pool, &crashKey(t, bundle, value).ID)
	require.NoError(t, err)
	return ride
}

// requireCancelCrashedAt requires the crash to have left the key locked at
// point's recovery point, with the claims and refunds that had happened
// before it and nothing after. It returns the key.
func requireCancelCrashedAt(t *testing.T, bundle *crashBundle, value string, point *cancelCrashPoint) *db.IdempotencyKey {
	t.Helper()
	key := crashKey(t, bundle, value)
	require.Equal(t, point.wantPoint, key.RecoveryPoint)
	require.NotNil(t, key.LockedAt, "a dead request keeps its lock")
	require.Nil(t, key.ResponseCode)
	require.Equal(t, point.wantClaims, crashCount(t, bundle, "SELECT count(*) FROM ride_cancellations"))
	require.Zero(t, crashCount(t, bundle, "SELECT count(*) FROM ride_cancellations WHERE cancelled_at IS NOT NULL"))
	require.Zero(t, crashCount(t, bundle, "SELECT count(*) FROM audit_records WHERE action = 'ride.cancelled'"))
	require.Zero(t, crashCount(t, bundle, "SELECT count(*) FROM staged_jobs WHERE job_name = 'send_cancellation_receipt'"))
	require.Len(t, bundle.fake.Refunds(), point.wantRefunds)
	return key
}

// recoverCancelByRetry is the client retrying with the same key: turned
// away while the dead request's lock holds, served once it timed out.
func recoverCancelByRetry(t *testing.T, bundle *crashBundle, req *rides.CancelRequest, key *db.IdempotencyKey) *idempotency.Response {
	t.Helper()
	ctx := context.Background()
	_, err := bundle.recovering.Cancel(ctx, req)
	require.ErrorIs(t, err, idempotency.ErrRequestInProgress)

	crashExec(t, bundle, "UPDATE idempotency_keys SET locked_at = now() - interval '1 hour' WHERE id = $1", key.ID)
	response, err := bundle.recovering.Cancel(ctx, req)
	require.NoError(t, err)
	require.False(t, response.Replayed)
	return response
}

// recoverCancelByCompleter ages the key and lets a completer drive it
// through the cancel workflow, which it finds by the key's workflow.
func recoverCancelByCompleter(t *testing.T, bundle *crashBundle, _ *rides.CancelRequest, key *db.IdempotencyKey) *idempotency.Response {
	t.Helper()
	crashExec(t, bundle, `UPDATE idempotency_keys
		SET created_at = now() - interval '2 hours', last_run_at = now() - interval '2 hours', locked_at = now() - interval '2 hours'
		WHERE id = $1`, key.ID)

	outcomes := make(chan string, 1)
	completer, err := jobs.NewCompleter(bundle.pool, bundle.recovering.Engine(), &jobs.CompleterConfig{
		Interval:    time.Hour,
		OutcomeFunc: func(outcome string) { outcomes <- outcome },
	})
	require.NoError(t, err)
	runService(t, completer, func() {
		require.Equal(t, jobs.CompleterOutcomeFinished, waitFor(t, outcomes))
	})
	return nil
}

// requireCancelledOnce requires the key finished with the 200 of ride's
// one cancellation: one full refund of its charge on Stripe, recorded on
// the cancellation, one audit record, one staged receipt; first (the
// retry's response, if any) and a later retry answer the stored response
// byte for byte.
func requireCancelledOnce(t *testing.T, bundle *crashBundle, keyID int64, ride *db.Ride, req *rides.CancelRequest, first *idempotency.Response) {
	t.Helper()
	ctx := context.Background()
	key, err := db.New().IdempotencyKeyGetByID(ctx, bundle.pool, keyID)
	require.NoError(t, err)
	require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
	require.Equal(t, int32(http.StatusOK), *key.ResponseCode, "%s", key.ResponseBody)
	require.Nil(t, key.LockedAt)

	refunds := bundle.fake.Refunds()
	require.Len(t, refunds, 1, "refunds in Stripe")
	refund := refunds[0]
	require.Equal(t, *ride.StripeChargeID, refund.Charge)
	require.Equal(t, int64(rides.ChargeAmount), refund.Amount)
	require.Equal(t, rides.StripeIdempotencyKey(key), refund.IdempotencyKey)

	require.Equal(t, 1, crashCount(t, bundle, "SELECT count(*) FROM ride_cancellations"))
	cancellation, err := db.New().RideCancellationGetByRideID(ctx, bundle.pool, ride.ID)
	require.NoError(t, err)
	require.Equal(t, refund.ID, *cancellation.StripeRefundID)
	require.NotNil(t, cancellation.CancelledAt)
	require.Equal(t, "storm", *cancellation.Reason)
	require.Equal(t, 1, crashCount(t, bundle, "SELECT count(*) FROM audit_records WHERE action = 'ride.cancelled'"))

	rows, err := bundle.pool.Query(ctx, "SELECT job_args FROM staged_jobs WHERE job_name = $1", rides.JobNameSendCancellationReceipt)
	require.NoError(t, err)
	staged, err := pgx.CollectRows(rows, pgx.RowTo[rides.CancellationReceiptArgs])
	require.NoError(t, err)
	require.Equal(t, []rides.CancellationReceiptArgs{{
		Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, StripeRefundID: refund.ID, UserID: bundle.user.ID,
	}}, staged)

	var body rides.CancelledBody
	require.NoError(t, json.Unmarshal(key.ResponseBody, &body))
	require.Equal(t, rides.MessageCancelled, body.Message)
	require.Equal(t, rides.StatusCancelled, body.Ride.Status)
	require.Equal(t, refund.ID, *body.Ride.StripeRefundID)
	var stored bytes.Buffer
	require.NoError(t, json.Compact(&stored, key.ResponseBody))

	replay, err := bundle.recovering.Cancel(ctx, req)
	require.NoError(t, err)
	require.True(t, replay.Replayed)
	require.Equal(t, stored.String(), string(replay.Body))
	if first != nil {
		require.Equal(t, http.StatusOK, first.Status)
		require.Equal(t, stored.String(), string(first.Body))
	}
}
