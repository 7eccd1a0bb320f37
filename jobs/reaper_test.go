package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
)

func TestReaper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type reaped struct{ finished, unfinished int64 }

	type testBundle struct {
		logs   *bytes.Buffer
		now    time.Time // the database's now(), frozen in tx
		reaped []reaped
		tx     pgx.Tx
		user   *db.User
	}

	setup := func(t *testing.T) (*Reaper, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		bundle := &testBundle{
			logs: &bytes.Buffer{},
			now:  completerDBNow(ctx, t, tx),
			tx:   tx,
			user: testfactory.User(ctx, t, tx, nil),
		}
		reaper := reaperNew(t, tx, &ReaperConfig{
			Logger: slog.New(slog.NewTextHandler(bundle.logs, nil)),
			ReapedFunc: func(finished, unfinished int64) {
				bundle.reaped = append(bundle.reaped, reaped{finished, unfinished})
			},
		})
		return reaper, bundle
	}

	// oldKey inserts a key created just past the horizon, at recoveryPoint.
	oldKey := func(t *testing.T, bundle *testBundle, recoveryPoint string) *db.IdempotencyKey {
		t.Helper()
		createdAt := bundle.now.Add(-ReaperHorizonDefault - time.Second)
		opts := &testfactory.IdempotencyKeyOpts{CreatedAt: &createdAt, LastRunAt: &createdAt, RecoveryPoint: &recoveryPoint}
		if recoveryPoint == idempotency.RecoveryPointFinished {
			opts.ResponseCode = testfactory.Ptr(int32(http.StatusCreated))
			opts.ResponseBody = json.RawMessage(`{}`)
		}
		return testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)
	}

	exists := func(t *testing.T, bundle *testBundle, key *db.IdempotencyKey) bool {
		t.Helper()
		_, err := db.New().IdempotencyKeyGetByID(ctx, bundle.tx, key.ID)
		if db.IsNotFound(err) {
			return false
		}
		require.NoError(t, err)
		return true
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		reaper := reaperNew(t, nil, nil)
		require.Equal(t, ReaperBatchSizeDefault, reaper.config.BatchSize)
		require.Equal(t, ReaperHorizonDefault, reaper.config.Horizon)
		require.Equal(t, ReaperIntervalDefault, reaper.config.Interval)
	})

	t.Run("DeletesOldKeysKeepsYoungOnes", func(t *testing.T) {
		t.Parallel()
		reaper, bundle := setup(t)
		old := oldKey(t, bundle, idempotency.RecoveryPointFinished)
		young := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt: testfactory.Ptr(bundle.now.Add(-ReaperHorizonDefault + time.Second)),
		})

		res, err := reaper.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &reaperRunOnceResult{NumDeleted: 1}, res)
		require.Equal(t, []reaped{{finished: 1}}, bundle.reaped)
		require.False(t, exists(t, bundle, old))
		require.True(t, exists(t, bundle, young))
	})

	t.Run("RideSurvivesItsKey", func(t *testing.T) {
		t.Parallel()
		reaper, bundle := setup(t)
		key := oldKey(t, bundle, idempotency.RecoveryPointFinished)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})

		_, err := reaper.runOnce(ctx)
		require.NoError(t, err)
		require.False(t, exists(t, bundle, key))

		var keyID *int64
		err = bundle.tx.QueryRow(ctx, "SELECT idempotency_key_id FROM rides WHERE id = $1", ride.ID).Scan(&keyID)
		require.NoError(t, err, "the ride stays")
		require.Nil(t, keyID)
	})

	t.Run("CountsAndLogsUnfinishedKeys", func(t *testing.T) {
		t.Parallel()
		reaper, bundle := setup(t)
		oldKey(t, bundle, idempotency.RecoveryPointFinished)
		oldKey(t, bundle, idempotency.RecoveryPointStarted)
		oldKey(t, bundle, rides.RecoveryPointRideCreated)

		res, err := reaper.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &reaperRunOnceResult{NumDeleted: 3, NumUnfinished: 2}, res)
		require.Equal(t, []reaped{{finished: 1, unfinished: 2}}, bundle.reaped)
		require.Contains(t, bundle.logs.String(), "level=WARN")
		require.Contains(t, bundle.logs.String(), "num_unfinished=2")
	})

	t.Run("NoOpOnEmptyTable", func(t *testing.T) {
		t.Parallel()
		reaper, bundle := setup(t)

		res, err := reaper.runOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, &reaperRunOnceResult{}, res)
		require.Empty(t, bundle.reaped)
		require.Empty(t, bundle.logs.String(), "an idle reaper logs nothing at info")
	})

	t.Run("DeletesInBatches", func(t *testing.T) {
		t.Parallel()
		_, bundle := setup(t)
		for range 5 {
			oldKey(t, bundle, idempotency.RecoveryPointFinished)
		}
		reaper := reaperNew(t, bundle.tx, &ReaperConfig{BatchSize: 2})

		for _, want := range []int64{2, 2, 1, 0} {
			res, err := reaper.runOnce(ctx)
			require.NoError(t, err)
			require.Equal(t, want, res.NumDeleted)
		}
	})

	t.Run("StartRunsFullBatchesAtOnceAndReturnsWhenCancelled", func(t *testing.T) {
		t.Parallel()
		_, bundle := setup(t)
		keys := make([]*db.IdempotencyKey, 5)
		for i := range keys {
			keys[i] = oldKey(t, bundle, idempotency.RecoveryPointFinished)
		}

		// The test must not use tx until Start is done: it only listens.
		deleted := make(chan int64)
		reaper := reaperNew(t, bundle.tx, &ReaperConfig{
			BatchSize:  2,
			Interval:   time.Hour, // only full batches can be followed by another pass in this test
			ReapedFunc: func(finished, unfinished int64) { deleted <- finished + unfinished },
		})
		startCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		require.NoError(t, reaper.Start(startCtx))

		require.Equal(t, []int64{2, 2, 1}, []int64{<-deleted, <-deleted, <-deleted})
		cancel()
		requireStops(t, reaper.Stop)
		for _, key := range keys {
			require.False(t, exists(t, bundle, key))
		}
	})
}

// reaperNew returns a reaper, failing the test if config is rejected.
func reaperNew(t *testing.T, exec db.DBTX, config *ReaperConfig) *Reaper {
	t.Helper()
	reaper, err := NewReaper(exec, config)
	require.NoError(t, err)
	return reaper
}
