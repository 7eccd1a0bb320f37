package jobs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/rides"
)

// receiptRecordingMailer records the receipts it sends, or fails with err.
type receiptRecordingMailer struct {
	err error

	mu       sync.Mutex
	receipts []*Receipt
}

func (m *receiptRecordingMailer) SendReceipt(_ context.Context, receipt *Receipt) error {
	if m.err != nil {
		return m.err
	}
	m.mu.Lock()
	m.receipts = append(m.receipts, receipt)
	m.mu.Unlock()
	return nil
}

func (m *receiptRecordingMailer) Receipts() []*Receipt {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Receipt(nil), m.receipts...)
}

func TestReceiptWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		mailer  *receiptRecordingMailer
		numSent int
		user    *db.User
	}

	setup := func(t *testing.T) (*rivertest.Worker[rides.ReceiptArgs, pgx.Tx], pgx.Tx, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		bundle := &testBundle{
			mailer: &receiptRecordingMailer{},
			user:   testfactory.User(ctx, t, tx, nil),
		}
		worker := NewReceiptWorker(tx, bundle.mailer, func() { bundle.numSent++ })
		return rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{}, worker), tx, bundle
	}

	t.Run("SendsReceipt", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)
		ride := testfactory.Ride(ctx, t, tx, bundle.user, nil)

		res, err := worker.Work(ctx, t, tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: bundle.user.ID}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCompleted, res.EventKind)
		require.Equal(t, []*Receipt{{
			Amount:   2000,
			Currency: "usd",
			Email:    bundle.user.Email,
			Kind:     ReceiptKindRide,
			RideID:   ride.ID,
			Text:     "Your Rocket Rides receipt: $20.00 for ride " + strconv.FormatInt(ride.ID, 10) + ". Thank you for riding!",
			UserID:   bundle.user.ID,
		}}, bundle.mailer.Receipts())
		require.Equal(t, 1, bundle.numSent)
	})

	t.Run("UnknownUserCancels", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)

		res, err := worker.Work(ctx, t, tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: 1, UserID: math.MaxInt64}, nil)
		require.NoError(t, err) // a cancel is not an error of the test worker
		require.Equal(t, river.EventKindJobCancelled, res.EventKind)
		require.Len(t, res.Job.Errors, 1)
		require.Contains(t, res.Job.Errors[0].Error, "does not exist")
		require.Empty(t, bundle.mailer.Receipts())
		require.Zero(t, bundle.numSent)
	})

	t.Run("ArgsWithoutRideCancel", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)

		res, err := worker.Work(ctx, t, tx, rides.ReceiptArgs{UserID: bundle.user.ID}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCancelled, res.EventKind)
		require.Len(t, res.Job.Errors, 1)
		require.Contains(t, res.Job.Errors[0].Error, "need a ride_id")
		require.Empty(t, bundle.mailer.Receipts())
	})

	t.Run("MailerErrorRetries", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)
		errMail := errors.New("mail server down")
		bundle.mailer.err = errMail
		ride := testfactory.Ride(ctx, t, tx, bundle.user, nil)

		res, err := worker.Work(ctx, t, tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: bundle.user.ID}, nil)
		require.ErrorIs(t, err, errMail)
		require.Equal(t, river.EventKindJobFailed, res.EventKind)
		// Retried: at once or later, as River's backoff says.
		require.Contains(t, []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStateRetryable}, res.Job.State)
		require.Zero(t, bundle.numSent)
	})
}

func TestCancellationReceiptWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		mailer  *receiptRecordingMailer
		numSent int
		user    *db.User
	}

	setup := func(t *testing.T) (*rivertest.Worker[rides.CancellationReceiptArgs, pgx.Tx], pgx.Tx, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		bundle := &testBundle{
			mailer: &receiptRecordingMailer{},
			user:   testfactory.User(ctx, t, tx, nil),
		}
		worker := NewCancellationReceiptWorker(tx, bundle.mailer, func() { bundle.numSent++ })
		return rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{}, worker), tx, bundle
	}

	t.Run("SendsReceipt", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)
		ride := testfactory.Ride(ctx, t, tx, bundle.user, nil)

		res, err := worker.Work(ctx, t, tx, rides.CancellationReceiptArgs{
			Amount: 2000, Currency: "usd", RideID: ride.ID, StripeRefundID: "re_123", UserID: bundle.user.ID,
		}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCompleted, res.EventKind)
		require.Equal(t, []*Receipt{{
			Amount:         2000,
			Currency:       "usd",
			Email:          bundle.user.Email,
			Kind:           ReceiptKindCancellation,
			RideID:         ride.ID,
			StripeRefundID: "re_123",
			Text: "Your Rocket Rides refund: $20.00 for cancelled ride " + strconv.FormatInt(ride.ID, 10) +
				" (refund re_123). It reaches your card in a few days.",
			UserID: bundle.user.ID,
		}}, bundle.mailer.Receipts())
		require.Equal(t, 1, bundle.numSent)
	})

	t.Run("UnknownUserCancels", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)

		res, err := worker.Work(ctx, t, tx, rides.CancellationReceiptArgs{
			Amount: 2000, Currency: "usd", RideID: 1, StripeRefundID: "re_123", UserID: math.MaxInt64,
		}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCancelled, res.EventKind)
		require.Len(t, res.Job.Errors, 1)
		require.Contains(t, res.Job.Errors[0].Error, "does not exist")
		require.Empty(t, bundle.mailer.Receipts())
		require.Zero(t, bundle.numSent)
	})

	t.Run("ArgsWithoutRefundCancel", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)
		ride := testfactory.Ride(ctx, t, tx, bundle.user, nil)

		res, err := worker.Work(ctx, t, tx, rides.CancellationReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: bundle.user.ID}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCancelled, res.EventKind)
		require.Len(t, res.Job.Errors, 1)
		require.Contains(t, res.Job.Errors[0].Error, "stripe_refund_id")
		require.Empty(t, bundle.mailer.Receipts())
	})

	t.Run("MailerErrorRetries", func(t *testing.T) {
		t.Parallel()
		worker, tx, bundle := setup(t)
		errMail := errors.New("mail server down")
		bundle.mailer.err = errMail
		ride := testfactory.Ride(ctx, t, tx, bundle.user, nil)

		res, err := worker.Work(ctx, t, tx, rides.CancellationReceiptArgs{
			Amount: 2000, Currency: "usd", RideID: ride.ID, StripeRefundID: "re_123", UserID: bundle.user.ID,
		}, nil)
		require.ErrorIs(t, err, errMail)
		require.Equal(t, river.EventKindJobFailed, res.EventKind)
		require.Contains(t, []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStateRetryable}, res.Job.State)
		require.Zero(t, bundle.numSent)
	})
}

func TestReceiptText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Your Rocket Rides receipt: $20.00 for ride 42. Thank you for riding!",
		receiptText(rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: 42, UserID: 1}))
	require.Equal(t, "Your Rocket Rides refund: 12.34 EUR for cancelled ride 42 (refund re_1). It reaches your card in a few days.",
		cancellationReceiptText(rides.CancellationReceiptArgs{Amount: 1234, Currency: "eur", RideID: 42, StripeRefundID: "re_1", UserID: 1}))
	require.Equal(t, "$0.05", receiptAmount(5, "usd"))
	require.Equal(t, "12.34 EUR", receiptAmount(1234, "eur"))
}

func TestLogMailer(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	mailer := NewLogMailer(slog.New(slog.NewTextHandler(&logs, nil)))

	err := mailer.SendReceipt(context.Background(), &Receipt{
		Amount: 2000, Currency: "usd", Email: "user@example.com", RideID: 42, Text: "Your receipt", UserID: 7,
	})
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("\n")))
	require.Contains(t, logs.String(), `level=INFO msg="receipt: sent" email=user@example.com ride_id=42 amount=2000 currency=usd`)
	require.NotContains(t, logs.String(), "text=", "the facts, not the text: the line stays short")

	logs.Reset()
	err = mailer.SendReceipt(context.Background(), &Receipt{
		Amount: 2000, Currency: "usd", Email: "user@example.com", Kind: ReceiptKindCancellation, RideID: 42,
		StripeRefundID: "re_1", Text: "Your refund", UserID: 7,
	})
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("\n")))
	require.Contains(t, logs.String(), `level=INFO msg="receipt: sent" email=user@example.com ride_id=42 amount=2000 currency=usd `+
		`kind=cancellation stripe_refund_id=re_1`)
}

// TestReceiptEndToEnd runs River's workers on a database of their own: a
// receipt staged twice (say, by a bug) and enqueued, then inserted once
// more after it was sent, is sent once.
func TestReceiptEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	user := testfactory.User(ctx, t, pool, nil)
	ride := testfactory.Ride(ctx, t, pool, user, nil)
	args := rides.ReceiptArgs{Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, UserID: user.ID}
	enqueuerStageReceipt(ctx, t, pool, args)
	enqueuerStageReceipt(ctx, t, pool, args)

	mailer := &receiptRecordingMailer{}
	var numSent atomic.Int64
	client, err := NewRiverClient(pool, &RiverClientConfig{
		Mailer:          mailer,
		ReceiptSentFunc: func() { numSent.Add(1) },
		Work:            true,
	})
	require.NoError(t, err)
	completed, unsubscribe := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	t.Cleanup(unsubscribe)

	res, err := enqueuerNew(t, pool, client, nil).runOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, &enqueuerRunOnceResult{NumDuplicates: 1, NumJobs: 2}, res)

	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.WithoutCancel(ctx))) })

	event := enqueuerWaitFor(t, completed)
	require.Equal(t, river.EventKindJobCompleted, event.Kind)
	receipts := mailer.Receipts()
	require.Len(t, receipts, 1)
	require.Equal(t, user.Email, receipts[0].Email)
	require.Equal(t, ride.ID, receipts[0].RideID)
	require.Equal(t, int64(1), numSent.Load())

	// The same receipt once more: River still has the completed job, so it
	// inserts nothing.
	inserted, err := client.Insert(ctx, args, nil)
	require.NoError(t, err)
	require.True(t, inserted.UniqueSkippedAsDuplicate)

	var numJobs int
	err = pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE kind = $1", rides.JobNameSendRideReceipt).Scan(&numJobs)
	require.NoError(t, err)
	require.Equal(t, 1, numJobs)
	require.Len(t, mailer.Receipts(), 1)
	require.Equal(t, int64(1), numSent.Load())
}

// TestCancellationReceiptEndToEnd runs River's workers on a database of their
// own, as TestReceiptEndToEnd does: a ride's receipt and its cancellation's,
// the latter staged twice, are each sent once, by their own worker.
func TestCancellationReceiptEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewDatabase(t)
	user := testfactory.User(ctx, t, pool, nil)
	ride := testfactory.Ride(ctx, t, pool, user, nil)
	enqueuerStageReceipt(ctx, t, pool, rides.ReceiptArgs{Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, UserID: user.ID})
	args := rides.CancellationReceiptArgs{
		Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, StripeRefundID: "re_123", UserID: user.ID,
	}
	enqueuerStageCancellationReceipt(ctx, t, pool, args)
	enqueuerStageCancellationReceipt(ctx, t, pool, args)

	mailer := &receiptRecordingMailer{}
	var numSent atomic.Int64
	client, err := NewRiverClient(pool, &RiverClientConfig{
		Mailer:          mailer,
		ReceiptSentFunc: func() { numSent.Add(1) },
		Work:            true,
	})
	require.NoError(t, err)
	completed, unsubscribe := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	t.Cleanup(unsubscribe)

	res, err := enqueuerNew(t, pool, client, nil).runOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, &enqueuerRunOnceResult{NumDuplicates: 1, NumJobs: 3}, res)

	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { require.NoError(t, client.Stop(context.WithoutCancel(ctx))) })

	for range 2 {
		event := enqueuerWaitFor(t, completed)
		require.Equal(t, river.EventKindJobCompleted, event.Kind, "job %s", event.Job.Kind)
	}
	kinds := make(map[string]*Receipt)
	for _, receipt := range mailer.Receipts() {
		kinds[receipt.Kind] = receipt
	}
	require.Len(t, mailer.Receipts(), 2)
	require.Equal(t, ride.ID, kinds[ReceiptKindRide].RideID)
	require.Equal(t, "re_123", kinds[ReceiptKindCancellation].StripeRefundID)
	require.Equal(t, user.Email, kinds[ReceiptKindCancellation].Email)
	require.Equal(t, int64(2), numSent.Load())

	// The same cancellation receipt once more: River still has the
	// completed job, so it inserts nothing.
	inserted, err := client.Insert(ctx, args, nil)
	require.NoError(t, err)
	require.True(t, inserted.UniqueSkippedAsDuplicate)
}
