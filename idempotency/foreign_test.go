package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
)

func TestCallForeign(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// foreign is a foreign system: it records the calls and finds, and
	// answers with its fields.
	type foreign struct {
		calls, finds []string
		doErr        error
		found        bool
	}
	newCall := func(f *foreign, window time.Duration) *idempotency.ForeignCall[string] {
		return &idempotency.ForeignCall[string]{
			Name:           "widget order",
			IdempotencyKey: "foreign-key-1",
			Do: func(_ context.Context, key string) (string, error) {
				f.calls = append(f.calls, key)
				return "made", f.doErr
			},
			Find: func(_ context.Context, key string) (string, bool, error) {
				f.finds = append(f.finds, key)
				if f.found {
					return "found", true, nil
				}
				return "", false, nil
			},
			Classify: func(err error) idempotency.ForeignOutcome {
				if errors.Is(err, errRefused) {
					return idempotency.ForeignDefinitive
				}
				return idempotency.ForeignIndeterminate
			},
			Window: window,
		}
	}
	// run resumes a key at middlePoint, created age ago, whose step makes
	// call and finishes with its result.
	run := func(t *testing.T, age time.Duration, call *idempotency.ForeignCall[string]) (*idempotency.Response, error) {
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			CreatedAt:     testfactory.Ptr(bundle.dbNow(t).Add(-age)),
			RecoveryPoint: testfactory.Ptr(middlePoint),
		})
		phases := newWorkflow(`{}`)
		phases.Steps[middlePoint] = func(ctx context.Context, run *idempotency.Run) error {
			result, err := idempotency.CallForeign(ctx, run, call)
			if err != nil {
				return err
			}
			return run.AtomicPhase(ctx, func(context.Context, *db.Pipeline, *db.IdempotencyKey) (idempotency.Result, error) {
				return idempotency.Finish(http.StatusCreated, map[string]string{"result": result}), nil
			})
		}
		return engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), phases)
	}

	t.Run("WithinWindowCalls", func(t *testing.T) {
		t.Parallel()
		f := &foreign{found: true}
		response, err := run(t, 30*time.Minute, newCall(f, time.Hour))
		require.NoError(t, err)
		require.JSONEq(t, `{"result": "made"}`, string(response.Body))
		require.Equal(t, []string{"foreign-key-1"}, f.calls)
		require.Empty(t, f.finds, "within the window the idempotency key protects")
	})

	t.Run("PastWindowFindsEarlierResult", func(t *testing.T) {
		t.Parallel()
		f := &foreign{found: true}
		response, err := run(t, 2*time.Hour, newCall(f, time.Hour))
		require.NoError(t, err)
		require.JSONEq(t, `{"result": "found"}`, string(response.Body))
		require.Equal(t, []string{"foreign-key-1"}, f.finds)
		require.Empty(t, f.calls, "an earlier result is never made again")
	})

	t.Run("PastWindowCallsWhenNothingFound", func(t *testing.T) {
		t.Parallel()
		f := &foreign{}
		response, err := run(t, 2*time.Hour, newCall(f, time.Hour))
		require.NoError(t, err)
		require.JSONEq(t, `{"result": "made"}`, string(response.Body))
		require.Len(t, f.finds, 1)
		require.Len(t, f.calls, 1)
	})

	t.Run("ZeroWindowNeverFinds", func(t *testing.T) {
		t.Parallel()
		f := &foreign{found: true}
		_, err := run(t, 1000*time.Hour, newCall(f, 0))
		require.NoError(t, err)
		require.Empty(t, f.finds)
	})

	t.Run("Definitive", func(t *testing.T) {
		t.Parallel()
		f := &foreign{doErr: errRefused}
		_, err := run(t, 0, newCall(f, time.Hour))
		require.ErrorIs(t, err, idempotency.ErrForeignDefinitive)
		require.ErrorIs(t, err, errRefused)
		require.ErrorContains(t, err, "widget order")
	})

	t.Run("Indeterminate", func(t *testing.T) {
		t.Parallel()
		f := &foreign{doErr: errors.New("connection reset")}
		_, err := run(t, 0, newCall(f, time.Hour))
		require.ErrorIs(t, err, idempotency.ErrForeignIndeterminate)
		require.NotErrorIs(t, err, idempotency.ErrForeignDefinitive)
	})
}

var errRefused = errors.New("refused")
