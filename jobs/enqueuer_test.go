package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

func TestEnqueuer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		enqueued []int
		logs     *bytes.Buffer
		tx       pgx.Tx
		user     *db.User
	}

	setup := func(t *testing.T, config *EnqueuerConfig) (*Enqueuer, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		bundle := &testBundle{logs: &bytes.Buffer{}, tx: tx, user: testfactory.User(ctx, t, tx, nil)}
		if config == nil {
			config = &EnqueuerConfig{}
		}
		config.JobsEnqueuedFunc = func(n int) { bundle.enqueued = append(bundle.enqueued, n) }
		config.Logger = slog.New(slog.NewTextHandler(bundle.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		return enqueuerNew(t, db.Savepoint{Tx: tx}, enqueuerTestClient(t), config), bundle
	}

	// receiptArgs returns the args of the receipt of a new ride.
	receiptArgs := func(t *testing.T, bundle *testBundle) rides.ReceiptArgs {
		t.Helper()
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)
		return rides.ReceiptArgs{Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, UserID: bundle.user.ID}
	}

	stagedCount := func(t *testing.T, bundle *testBundle) int64 {
		t.Helper()
		count, err := db.New().StagedJobCount(ctx, bundle.tx)
		require.NoError(t, err)
		return count
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		enqueuer := enqueuerNew(t, nil, nil, nil)
		require.Equal(t, EnqueuerBatchSizeDefault, enqueuer.config.BatchSize)
		require.Equal(t, EnqueuerIntervalDefault, enqueuer.config.Interval)
		require.Equal(t, EnqueuerQueryTimeoutDefault, enqueuer.config.QueryTimeout)
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		for _, config := range []*EnqueuerConfig{{BatchSize: -1}, {Interval: -time.Second}, {QueryTimeout: -time.Second}} {
			_, err := NewEnqueuer(nil, nil, config)
			require.ErrorContains(t, err, "enqueuer: ")
		}
	})

	t.Run("EnqueuesAndRemovesStagedJob", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)
		args := receiptArgs(t, bundle)
		enqueuerStageReceipt(ctx, t, bundle.tx, args)

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumJobs: 1}, res)

		job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, rides.ReceiptArgs{}, nil)
		require.Equal(t, args, job.Args)
		require.Zero(t, stagedCount(t, bundle))
		require.Equal(t, []int{1}, bundle.enqueued)
		require.Contains(t, bundle.logs.String(), `level=INFO msg="enqueuer: enqueued jobs" num_jobs=1`)
	})

	t.Run("EnqueuesCancellationReceipt", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)
		args := rides.CancellationReceiptArgs{
			Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, StripeRefundID: "re_123", UserID: bundle.user.ID,
		}
		enqueuerStageCancellationReceipt(ctx, t, bundle.tx, args)
		enqueuerStageCancellationReceipt(ctx, t, bundle.tx, args)

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumDuplicates: 1, NumJobs: 2}, res)
		job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, rides.CancellationReceiptArgs{}, nil)
		require.Equal(t, args, job.Args)
		require.Zero(t, stagedCount(t, bundle))
	})

	t.Run("NoOpOnEmptyTable", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{}, res)
		rivertest.RequireNotInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, rides.ReceiptArgs{}, nil)
		require.Empty(t, bundle.enqueued)
		require.Contains(t, bundle.logs.String(), `level=DEBUG msg="enqueuer: enqueued jobs" num_jobs=0`)
	})

	t.Run("FullBatchLeavesTheRest", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, &EnqueuerConfig{BatchSize: 2})
		var staged []rides.ReceiptArgs
		for range 3 {
			args := receiptArgs(t, bundle)
			enqueuerStageReceipt(ctx, t, bundle.tx, args)
			staged = append(staged, args)
		}

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, res.NumJobs)
		require.Equal(t, int64(1), stagedCount(t, bundle))

		res, err = enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, res.NumJobs)
		require.Zero(t, stagedCount(t, bundle))

		// Oldest first: River's ids follow the staging order.
		rows := rivertest.RequireManyInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, []rivertest.ExpectedJob{
			{Args: rides.ReceiptArgs{}}, {Args: rides.ReceiptArgs{}}, {Args: rides.ReceiptArgs{}},
		})
		for i, row := range rows {
			var args rides.ReceiptArgs
			require.NoError(t, json.Unmarshal(row.EncodedArgs, &args))
			require.Equal(t, staged[i], args)
		}
	})

	t.Run("SameReceiptTwiceInOneBatch", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)
		args := receiptArgs(t, bundle)
		enqueuerStageReceipt(ctx, t, bundle.tx, args)
		enqueuerStageReceipt(ctx, t, bundle.tx, args)

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumDuplicates: 1, NumJobs: 2}, res)
		job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, rides.ReceiptArgs{}, nil)
		require.Equal(t, args, job.Args)
		require.Zero(t, stagedCount(t, bundle))
	})

	t.Run("SameReceiptInALaterBatch", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)
		args := receiptArgs(t, bundle)
		enqueuerStageReceipt(ctx, t, bundle.tx, args)
		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumJobs: 1}, res)

		enqueuerStageReceipt(ctx, t, bundle.tx, args)
		res, err = enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumDuplicates: 1, NumJobs: 1}, res)

		rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, bundle.tx, rides.ReceiptArgs{}, nil)
		require.Zero(t, stagedCount(t, bundle))
	})

	t.Run("UnknownAndMalformedJobsPassThrough", func(t *testing.T) {
		t.Parallel()
		enqueuer, bundle := setup(t, nil)
		args := receiptArgs(t, bundle)
		testfactory.StagedJob(ctx, t, bundle.tx, "send_welcome_email", json.RawMessage(`{"user_id": 7}`))
		testfactory.StagedJob(ctx, t, bundle.tx, rides.JobNameSendRideReceipt, json.RawMessage(`{"ride_id": "not a number"}`))
		testfactory.StagedJob(ctx, t, bundle.tx, rides.JobNameSendRideReceipt, json.RawMessage(`{}`))
		testfactory.StagedJob(ctx, t, bundle.tx, rides.JobNameSendRideReceipt, json.RawMessage(`{}`))
		enqueuerStageReceipt(ctx, t, bundle.tx, args)
		testfactory.StagedJob(ctx, t, bundle.tx, rides.JobNameSendCancellationReceipt, json.RawMessage(`{"ride_id": 1, "user_id": 1}`))

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &enqueuerRunOnceResult{NumJobs: 6}, res)
		require.Zero(t, stagedCount(t, bundle))

		// Each is in River, in staging order, with its args as staged;
		// malformed args are not unique, so neither {} hides the other.
		rows, err := bundle.tx.Query(ctx, "SELECT kind, args::text FROM river_job ORDER BY id")
		require.NoError(t, err)
		type riverJob struct{ Kind, Args string }
		jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[riverJob])
		require.NoError(t, err)
		wantArgs, err := json.Marshal(args)
		require.NoError(t, err)
		require.Equal(t, []riverJob{
			{"send_welcome_email", `{"user_id": 7}`},
			{rides.JobNameSendRideReceipt, `{"ride_id": "not a number"}`},
			{rides.JobNameSendRideReceipt, `{}`},
			{rides.JobNameSendRideReceipt, `{}`},
			{rides.JobNameSendRideReceipt, enqueuerJSONB(ctx, t, bundle.tx, wantArgs)},
			{rides.JobNameSendCancellationReceipt, `{"ride_id": 1, "user_id": 1}`},
		}, jobs)

		logs := bundle.logs.String()
		require.Contains(t, logs, `level=ERROR msg="enqueuer: unknown job name; handing the job to River under that kind"`)
		require.Contains(t, logs, `job_name=send_welcome_email`)
		require.Contains(t, logs, `level=ERROR msg="enqueuer: job args do not decode; handing the job to River as it is"`)
	})

	t.Run("FailedInsertLeavesJobsStaged", func(t *testing.T) {
		t.Parallel()
		tx := dbtest.Tx(ctx, t)
		errInsert := errors.New("insert refused")
		client, err := river.NewClient(riverpgxv5.New(nil), &river.Config{
			Hooks: []rivertype.Hook{river.HookInsertBeginFunc(func(context.Context, *rivertype.JobInsertParams) error {
				return errInsert
			})},
		})
		require.NoError(t, err)
		enqueuer := enqueuerNew(t, db.Savepoint{Tx: tx}, client, nil)
		user := testfactory.User(ctx, t, tx, nil)
		ride := testfactory.Ride(ctx, t, tx, user, nil)
		enqueuerStageReceipt(ctx, t, tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: user.ID})

		_, err = enqueuer.runOnce(ctx)
		require.ErrorIs(t, err, errInsert)

		count, err := db.New().StagedJobCount(ctx, tx)
		require.NoError(t, err)
		require.Equal(t, int64(1), count)
		rivertest.RequireNotInsertedTx[*riverpgxv5.Driver](ctx, t, tx, rides.ReceiptArgs{}, nil)
	})

	t.Run("StartEnqueuesUntilCancelled", func(t *testing.T) {
		t.Parallel()
		tx := dbtest.Tx(ctx, t)
		user := testfactory.User(ctx, t, tx, nil)
		ride := testfactory.Ride(ctx, t, tx, user, nil)
		args := rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: ride.ID, UserID: user.ID}
		enqueuerStageReceipt(ctx, t, tx, args)

		enqueued := make(chan int, 1)
		enqueuer := enqueuerNew(t, db.Savepoint{Tx: tx}, enqueuerTestClient(t), &EnqueuerConfig{
			JobsEnqueuedFunc: func(n int) { enqueued <- n },
		})
		startCtx, cancel := context.WithCancel(ctx)
		require.NoError(t, enqueuer.Start(startCtx))
		require.Equal(t, 1, enqueuerWaitFor(t, enqueued))
		cancel()
		enqueuer.Stop() // waits: the transaction is the test's again

		job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, tx, rides.ReceiptArgs{}, nil)
		require.Equal(t, args, job.Args)
	})

	t.Run("TwoEnqueuersDrainConcurrentlyEachJobOnce", func(t *testing.T) {
		t.Parallel()
		const numJobs = 2500
		pool := dbtest.NewDatabase(t)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for i := range numJobs {
				enqueuerStageReceipt(ctx, t, tx, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: int64(i + 1), UserID: 1})
			}
			return nil
		})
		require.NoError(t, err)

		// Each loops until it finds nothing: rows the other has locked are
		// skipped, and the last to commit a batch looks once more.
		var (
			wg     sync.WaitGroup
			totals [2]enqueuerRunOnceResult
			errs   [2]error
		)
		for i := range totals {
			enqueuer := enqueuerNew(t, pool, enqueuerTestClient(t), &EnqueuerConfig{BatchSize: 250})
			wg.Go(func() {
				for {
					res, err := enqueuer.runOnce(ctx)
					if err != nil {
						errs[i] = err
						return
					}
					if res.NumJobs == 0 {
						return
					}
					totals[i].NumJobs += res.NumJobs
					totals[i].NumDuplicates += res.NumDuplicates
				}
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs[:]...))

		// Uniqueness would hide a job handed over twice in River's table,
		// but not in the counts of the enqueuers.
		require.Equal(t, numJobs, totals[0].NumJobs+totals[1].NumJobs)
		require.Zero(t, totals[0].NumDuplicates+totals[1].NumDuplicates)
		var numRiverJobs, numRides int
		err = pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT args->>'ride_id') FROM river_job WHERE kind = $1",
			rides.JobNameSendRideReceipt).Scan(&numRiverJobs, &numRides)
		require.NoError(t, err)
		require.Equal(t, numJobs, numRiverJobs)
		require.Equal(t, numJobs, numRides)
		require.Zero(t, enqueuerStagedCount(ctx, t, pool))
	})

	t.Run("JobCommittedLateWithLowerIDIsNotLost", func(t *testing.T) {
		t.Parallel()
		pool := dbtest.NewDatabase(t)
		enqueuer := enqueuerNew(t, pool, enqueuerTestClient(t), nil)

		// A stages first (lower id) but commits after B.
		txA, err := pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = txA.Rollback(ctx) })
		enqueuerStageReceipt(ctx, t, txA, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: 1, UserID: 1})
		txB, err := pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = txB.Rollback(ctx) })
		enqueuerStageReceipt(ctx, t, txB, rides.ReceiptArgs{Amount: 2000, Currency: "usd", RideID: 2, UserID: 1})
		require.Less(t, enqueuerMaxStagedID(ctx, t, txA), enqueuerMaxStagedID(ctx, t, txB))
		require.NoError(t, txB.Commit(ctx))

		res, err := enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, res.NumJobs)
		require.Equal(t, []int64{2}, enqueuerRiverRideIDs(ctx, t, pool))

		require.NoError(t, txA.Commit(ctx))
		res, err = enqueuer.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, res.NumJobs)
		require.Equal(t, []int64{1, 2}, enqueuerRiverRideIDs(ctx, t, pool))
		require.Zero(t, enqueuerStagedCount(ctx, t, pool))
	})
}

// enqueuerWaitFor receives from ch, failing the test if nothing comes in a
// long while: a bound on a wait for a signal, not a timing assertion.
func enqueuerWaitFor[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for a signal")
		panic("unreachable")
	}
}

// enqueuerTestClient returns an insert-only River client.
func enqueuerTestClient(t *testing.T) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := NewRiverClient(nil, nil)
	require.NoError(t, err)
	return client
}

// enqueuerNew returns an enqueuer, failing the test if config is rejected.
func enqueuerNew(t *testing.T, exec db.Executor, client *river.Client[pgx.Tx], config *EnqueuerConfig) *Enqueuer {
	t.Helper()
	enqueuer, err := NewEnqueuer(exec, client, config)
	require.NoError(t, err)
	return enqueuer
}

// enqueuerStageReceipt stages a receipt job, as rides does.
func enqueuerStageReceipt(ctx context.Context, t *testing.T, exec db.DBTX, args rides.ReceiptArgs) {
	t.Helper()
	encoded, err := json.Marshal(args)
	require.NoError(t, err)
	testfactory.StagedJob(ctx, t, exec, rides.JobNameSendRideReceipt, encoded)
}

// enqueuerStageCancellationReceipt stages a cancellation receipt job, as the
// cancel workflow does.
func enqueuerStageCancellationReceipt(ctx context.Context, t *testing.T, exec db.DBTX, args rides.CancellationReceiptArgs) {
	t.Helper()
	encoded, err := json.Marshal(args)
	require.NoError(t, err)
	testfactory.StagedJob(ctx, t, exec, rides.JobNameSendCancellationReceipt, encoded)
}

// enqueuerJSONB returns encoded as PostgreSQL prints it back from jsonb.
func enqueuerJSONB(ctx context.Context, t *testing.T, exec db.DBTX, encoded []byte) string {
	t.Helper()
	var text string
	require.NoError(t, exec.QueryRow(ctx, "SELECT $1::jsonb::text", string(encoded)).Scan(&text))
	return text
}

func enqueuerMaxStagedID(ctx context.Context, t *testing.T, exec db.DBTX) int64 {
	t.Helper()
	var id int64
	require.NoError(t, exec.QueryRow(ctx, "SELECT max(id) FROM staged_jobs").Scan(&id))
	return id
}

func enqueuerStagedCount(ctx context.Context, t *testing.T, exec db.DBTX) int64 {
	t.Helper()
	count, err := db.New().StagedJobCount(ctx, exec)
	require.NoError(t, err)
	return count
}

// enqueuerRiverRideIDs returns the ride ids of the receipt jobs in River.
func enqueuerRiverRideIDs(ctx context.Context, t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT (args->>'ride_id')::bigint FROM river_job WHERE kind = $1 ORDER BY 1", rides.JobNameSendRideReceipt)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return ids
}
