package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/inspect"
	"github.com/rocketrides/rocketrides/jobs"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// fixture is a test's rolled-back transaction, a Stripe fake and a client
// of it, and an inspector on all three.
type fixture struct {
	inspector *inspect.Inspector
	river     *river.Client[pgx.Tx]
	stripe    *stripeclient.Client
	tx        pgx.Tx
}

func newFixture(ctx context.Context, t *testing.T) *fixture {
	t.Helper()
	tx := dbtest.Tx(ctx, t)
	_, baseURL := stripefaketest.NewServer(t, stripefake.Config{})
	stripe := ridestest.NewStripe(t, baseURL)
	riverClient, err := jobs.NewRiverClient(nil, nil)
	require.NoError(t, err)
	inspector, err := inspect.NewInspector(db.Savepoint{Tx: tx}, riverClient, stripe, nil)
	require.NoError(t, err)
	return &fixture{inspector: inspector, river: riverClient, stripe: stripe, tx: tx}
}

// user inserts a user whose customer the fake knows.
func (f *fixture) user(ctx context.Context, t *testing.T) *db.User {
	t.Helper()
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customer, err := f.stripe.CustomerCreate(ctx, email, "tok_visa")
	require.NoError(t, err)
	return testfactory.User(ctx, t, f.tx, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customer})
}

// chargedRide is what chargedRide made: a ride created, charged and
// cancelled, as the two workflows leave it.
type chargedRide struct {
	cancelKey *db.IdempotencyKey
	chargeID  string
	key       *db.IdempotencyKey
	refundID  string
	ride      *db.Ride
	user      *db.User
}

// chargedRide inserts a ride as POST /rides leaves it (finished key, charge,
// audit record, receipt in River) and then as its cancellation leaves it
// (finished cancel key, refund, cancellation, audit record, staged
// cancellation receipt).
func (f *fixture) chargedRide(ctx context.Context, t *testing.T) *chargedRide {
	t.Helper()
	queries := db.New()
	user := f.user(ctx, t)
	key := testfactory.IdempotencyKey(ctx, t, f.tx, user, &testfactory.IdempotencyKeyOpts{
		RecoveryPoint: testfactory.Ptr("finished"), ResponseCode: testfactory.Ptr[int32](201),
		ResponseBody: json.RawMessage(`{"message": "Payment accepted. Your pilot is on their way!"}`),
	})
	ride := testfactory.Ride(ctx, t, f.tx, user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
	charge, err := f.stripe.ChargeCreate(ctx, rides.NewChargeParams(user.StripeCustomerID, key, ride.ID))
	require.NoError(t, err)
	ride, err = queries.RideSetStripeChargeID(ctx, f.tx, &db.RideSetStripeChargeIDParams{ID: ride.ID, StripeChargeID: &charge.ID})
	require.NoError(t, err)
	require.NoError(t, queries.AuditRecordInsert(ctx, f.tx, &db.AuditRecordInsertParams{
		Action: rides.AuditActionRideCreated, Data: testfactory.ValidParams, OriginIP: netip.MustParseAddr("127.0.0.1"),
		ResourceID: ride.ID, ResourceType: "ride", UserID: user.ID,
	}))
	_, err = f.river.InsertTx(ctx, f.tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: user.ID}, nil)
	require.NoError(t, err)

	rideID := strconv.FormatInt(ride.ID, 10)
	cancelKey := testfactory.IdempotencyKey(ctx, t, f.tx, user, &testfactory.IdempotencyKeyOpts{
		RecoveryPoint: testfactory.Ptr("finished"),
		RequestParams: json.RawMessage(`{"ride_id": ` + rideID + `, "reason": "changed my mind"}`),
		RequestPath:   testfactory.Ptr("/rides/" + rideID + "/cancel"), ResponseCode: testfactory.Ptr[int32](200),
		ResponseBody: json.RawMessage(`{"message": "Ride cancelled. Your refund is on its way."}`), Workflow: testfactory.Ptr(rides.WorkflowCancel),
	})
	refund, err := f.stripe.RefundCreate(ctx, &stripeclient.RefundParams{
		Charge: charge.ID, IdempotencyKey: "rocket-rides-" + cancelKey.StripeIdempotencyKey.String(),
		Metadata: map[string]string{"ride_id": rideID},
	})
	require.NoError(t, err)
	cancellation, err := queries.RideCancellationInsert(ctx, f.tx, &db.RideCancellationInsertParams{
		IdempotencyKeyID: &cancelKey.ID, Reason: testfactory.Ptr("changed my mind"), RideID: ride.ID, UserID: user.ID,
	})
	require.NoError(t, err)
	err = queries.RideCancellationSetRefund(ctx, f.tx, &db.RideCancellationSetRefundParams{ID: cancellation.ID, StripeRefundID: &refund.ID, CancelledAt: new(time.Now())})
	require.NoError(t, err)
	require.NoError(t, queries.AuditRecordInsert(ctx, f.tx, &db.AuditRecordInsertParams{
		Action: "ride.cancelled", Data: json.RawMessage(`{"reason": "changed my mind"}`), OriginIP: netip.MustParseAddr("127.0.0.1"),
		ResourceID: ride.ID, ResourceType: "ride", UserID: user.ID,
	}))
	testfactory.StagedJob(ctx, t, f.tx, "send_cancellation_receipt",
		json.RawMessage(`{"ride_id": `+rideID+`, "user_id": `+strconv.FormatInt(user.ID, 10)+`, "amount": 2000, "currency": "usd", "stripe_refund_id": "`+refund.ID+`"}`))
	return &chargedRide{cancelKey: cancelKey, chargeID: charge.ID, key: key, refundID: refund.ID, ride: ride, user: user}
}

// TestChargedAndCancelled inspects a ride with a charge and a
// cancellation, by its creating key, by its cancel key and by its id: each
// shows the same ride, charge, refund, audit records and jobs, and only
// the ride's.
func TestChargedAndCancelled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(ctx, t)
	want := f.chargedRide(ctx, t)
	other := f.chargedRide(ctx, t) // its records must not show

	byKey, err := f.inspector.ByKey(ctx, want.user.Email, want.key.IdempotencyKey)
	require.NoError(t, err)
	byCancelKey, err := f.inspector.ByKey(ctx, want.user.Email, want.cancelKey.IdempotencyKey)
	require.NoError(t, err)
	byRide, err := f.inspector.ByRide(ctx, want.ride.ID)
	require.NoError(t, err)

	require.Equal(t, "POST /rides", byKey.Key.Workflow)
	require.Equal(t, "POST /rides/{id}/cancel", byCancelKey.Key.Workflow)
	require.Equal(t, want.cancelKey.ID, byCancelKey.Key.ID)
	require.Equal(t, want.key.ID, byRide.Key.ID, "a ride's report shows the key that created it")

	for _, report := range []*inspect.Report{byKey, byCancelKey, byRide} {
		require.Equal(t, want.user.ID, report.User.ID)
		require.Equal(t, want.ride.ID, report.Ride.ID)
		require.Equal(t, rides.StatusCancelled, report.Ride.Status)
		require.NotNil(t, report.Cancellation.CancelledAt)
		require.Equal(t, want.refundID, *report.Cancellation.StripeRefundID)

		require.Empty(t, report.StripeError)
		require.Equal(t, want.chargeID, report.Charge.ID)
		require.Equal(t, inspect.ChargeFoundByRide, report.Charge.FoundBy)
		require.Equal(t, "succeeded", report.Charge.Status)
		require.True(t, report.Charge.Refunded)
		require.EqualValues(t, 2000, report.Charge.AmountRefunded)
		require.Len(t, report.Refunds, 1)
		require.Equal(t, want.refundID, report.Refunds[0].ID)

		require.Len(t, report.AuditRecords, 2)
		require.Equal(t, rides.AuditActionRideCreated, report.AuditRecords[0].Action)
		require.Equal(t, "ride.cancelled", report.AuditRecords[1].Action)
		require.Len(t, report.StagedJobs, 1)
		require.Equal(t, "send_cancellation_receipt", report.StagedJobs[0].JobName)
		require.Len(t, report.RiverJobs, 1)
		require.Equal(t, rides.JobNameSendRideReceipt, report.RiverJobs[0].Kind)
		require.Equal(t, "available", report.RiverJobs[0].State)
		require.JSONEq(t, `{"amount": 2000, "currency": "usd", "ride_id": `+strconv.FormatInt(want.ride.ID, 10)+`, "user_id": `+
			strconv.FormatInt(want.user.ID, 10)+`}`, string(report.RiverJobs[0].Args))
	}
	require.NotEqual(t, other.ride.ID, byRide.Ride.ID)

	var text bytes.Buffer
	require.NoError(t, byKey.WriteText(&text))
	// Columns are aligned per block; compare with single spaces.
	spaced := regexp.MustCompile(` {2,}`).ReplaceAllString(text.String(), " ")
	for _, part := range []string{
		"idempotency key " + strconv.FormatInt(want.key.ID, 10),
		"workflow POST /rides\n",
		"recovery point finished",
		"lock unlocked",
		"run count 1",
		"response 201 {",
		"ride " + strconv.FormatInt(want.ride.ID, 10) + " of " + want.user.Email,
		"status cancelled",
		"stripe charge " + want.chargeID + " (found by ride)",
		"refund " + want.refundID + " succeeded 2000 usd",
		"audit records: 2",
		"ride.created",
		"staged jobs: 1",
		"river jobs: 1",
		"send_ride_receipt",
	} {
		require.Contains(t, spaced, part)
	}
	t.Logf("the report as text:\n%s", &text)

	var out bytes.Buffer
	require.NoError(t, byRide.WriteJSON(&out))
	var parsed struct {
		Key struct {
			ID       int64  `json:"id"`
			Workflow string `json:"workflow"`
			LockLive bool   `json:"lock_live"`
		} `json:"idempotency_key"`
		Ride struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"ride"`
		Charge struct {
			ID string `json:"id"`
		} `json:"stripe_charge"`
		Refunds      []struct{ ID string }     `json:"stripe_refunds"`
		AuditRecords []struct{ Action string } `json:"audit_records"`
		RiverJobs    []struct{ Kind string }   `json:"river_jobs"`
		StagedJobs   []struct {
			JobName string `json:"job_name"`
		} `json:"staged_jobs"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &parsed), out.String())
	require.Equal(t, want.key.ID, parsed.Key.ID)
	require.Equal(t, "POST /rides", parsed.Key.Workflow)
	require.Equal(t, want.ride.ID, parsed.Ride.ID)
	require.Equal(t, "cancelled", parsed.Ride.Status)
	require.Equal(t, want.chargeID, parsed.Charge.ID)
	require.Len(t, parsed.Refunds, 1)
	require.Len(t, parsed.AuditRecords, 2)
	require.Len(t, parsed.RiverJobs, 1)
	require.Equal(t, "send_cancellation_receipt", parsed.StagedJobs[0].JobName)
}

// TestKeyOnly inspects a key whose request holds its lock and has made no
// ride yet.
func TestKeyOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(ctx, t)
	user := f.user(ctx, t)
	lockedAt := time.Now().Add(-3 * time.Second)
	key := testfactory.IdempotencyKey(ctx, t, f.tx, user, &testfactory.IdempotencyKeyOpts{LockedAt: &lockedAt})

	report, err := f.inspector.ByKey(ctx, user.Email, key.IdempotencyKey)
	require.NoError(t, err)
	require.Equal(t, key.ID, report.Key.ID)
	require.Equal(t, "started", report.Key.RecoveryPoint)
	require.True(t, report.Key.LockLive)
	require.InDelta(t, 3, report.Key.LockAgeSeconds, 2, "by the database's clock")
	require.Nil(t, report.Ride)
	require.Nil(t, report.Charge)
	require.Empty(t, report.AuditRecords)

	var text bytes.Buffer
	require.NoError(t, report.WriteText(&text))
	require.Regexp(t, `lock +locked [0-9.]+s ago \(live: held by a request\)`, text.String())
	require.Regexp(t, `response +none stored \(unfinished\)`, text.String())
	require.Contains(t, text.String(), "ride: none")

	var parsed map[string]any
	require.NoError(t, json.Unmarshal(mustJSON(t, report), &parsed))
	require.Nil(t, parsed["ride"])
	require.Equal(t, []any{}, parsed["audit_records"])

	// Past the lock timeout, the same lock is stale.
	stale, err := inspect.NewInspector(db.Savepoint{Tx: f.tx}, f.river, f.stripe, &inspect.InspectorConfig{LockTimeout: time.Second})
	require.NoError(t, err)
	report, err = stale.ByKey(ctx, user.Email, key.IdempotencyKey)
	require.NoError(t, err)
	require.False(t, report.Key.LockLive)
}

// TestPendingChargeFoundOnStripe inspects a ride whose charge Stripe made
// but whose answer was lost: the ride records no charge, and the report
// finds it by the ride's id in its metadata.
func TestPendingChargeFoundOnStripe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(ctx, t)
	user := f.user(ctx, t)
	key := testfactory.IdempotencyKey(ctx, t, f.tx, user, &testfactory.IdempotencyKeyOpts{RecoveryPoint: testfactory.Ptr(rides.RecoveryPointRideCreated)})
	ride := testfactory.Ride(ctx, t, f.tx, user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
	charge, err := f.stripe.ChargeCreate(ctx, rides.NewChargeParams(user.StripeCustomerID, key, ride.ID))
	require.NoError(t, err)

	report, err := f.inspector.ByRide(ctx, ride.ID)
	require.NoError(t, err)
	require.Equal(t, rides.StatusPendingPayment, report.Ride.Status)
	require.Equal(t, charge.ID, report.Charge.ID)
	require.Equal(t, inspect.ChargeFoundByMetadata, report.Charge.FoundBy)
	require.Empty(t, report.Refunds)
}

// TestWithoutStripe checks that an inspector without Stripe still reports
// the database and says that Stripe was not asked.
func TestWithoutStripe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(ctx, t)
	want := f.chargedRide(ctx, t)
	inspector, err := inspect.NewInspector(db.Savepoint{Tx: f.tx}, f.river, nil, nil)
	require.NoError(t, err)
	report, err := inspector.ByRide(ctx, want.ride.ID)
	require.NoError(t, err)
	require.Equal(t, rides.StatusCancelled, report.Ride.Status)
	require.Nil(t, report.Charge)
	require.Contains(t, report.StripeError, "not asked")
	var text bytes.Buffer
	require.NoError(t, report.WriteText(&text))
	require.Contains(t, text.String(), "stripe: not asked")
}

// TestNotFound checks that an unknown user, key or ride is its sentinel,
// with a message naming what was asked for.
func TestNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(ctx, t)
	user := f.user(ctx, t)

	_, err := f.inspector.ByKey(ctx, user.Email, "no-such-key")
	require.ErrorIs(t, err, inspect.ErrKeyNotFound)
	require.Equal(t, `no such idempotency key "no-such-key" for `+user.Email, err.Error())

	_, err = f.inspector.ByKey(ctx, "nobody@example.com", "no-such-key")
	require.ErrorIs(t, err, inspect.ErrUserNotFound)
	require.Equal(t, `no such user with email "nobody@example.com"`, err.Error())

	_, err = f.inspector.ByRide(ctx, -1)
	require.ErrorIs(t, err, inspect.ErrRideNotFound)
	require.Equal(t, "no such ride with id -1", err.Error())
}

func TestNewInspectorRejectsNonsense(t *testing.T) {
	t.Parallel()
	riverClient, err := jobs.NewRiverClient(nil, nil)
	require.NoError(t, err)
	_, err = inspect.NewInspector(dbtest.Pool(t), riverClient, nil, &inspect.InspectorConfig{Timeout: -time.Second})
	require.EqualError(t, err, "inspector: Timeout must not be negative, got -1s")
}

func mustJSON(t *testing.T, report *inspect.Report) []byte {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, report.WriteJSON(&out))
	return out.Bytes()
}
