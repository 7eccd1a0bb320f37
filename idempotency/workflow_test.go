package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	restore := func(context.Context, *db.IdempotencyKey) (*idempotency.Phases, error) { return nil, nil }

	engine := newEngine(t, nil, nil)
	for _, tt := range []struct {
		wf   *idempotency.Workflow
		want string
	}{
		{&idempotency.Workflow{Name: testWorkflow, Restore: restore}, "already registered"},
		{&idempotency.Workflow{Restore: restore}, "name"},
		{&idempotency.Workflow{Name: "POST /other"}, "Restore"},
		{&idempotency.Workflow{Name: "POST /other", Restore: restore, RecoveryPoints: []string{""}}, "1 to 50"},
		{&idempotency.Workflow{Name: "POST /other", Restore: restore, RecoveryPoints: []string{"finished"}}, "engine's own"},
		{&idempotency.Workflow{Name: "POST /other", Restore: restore, RecoveryPoints: []string{"a", "b", "a"}}, "twice"},
	} {
		require.ErrorContains(t, engine.Register(tt.wf), tt.want)
	}
	require.NoError(t, engine.Register(&idempotency.Workflow{Name: "POST /other", Restore: restore, RecoveryPoints: []string{"a"}}))
	require.Equal(t, []string{"POST /other", testWorkflow}, engine.Workflows())
}

func TestWorkflows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("UnregisteredWorkflowRefused", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		req := newRequest(bundle.user, testfactory.KeyValue())
		req.Workflow = "POST /unknown"

		_, err := engine.Execute(ctx, req, newWorkflow(`{}`))

		require.ErrorIs(t, err, idempotency.ErrUnknownWorkflow)
		requireNoKey(t, bundle, req.Key)
	})

	t.Run("PhasesMustFitWorkflow", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		extra := newWorkflow(`{}`)
		extra.Steps["not_listed"] = extra.Steps[middlePoint]
		missing := newWorkflow(`{}`)
		delete(missing.Steps, middlePoint)

		for _, phases := range []*idempotency.Phases{extra, missing, {}} {
			_, err := engine.Execute(ctx, newRequest(bundle.user, testfactory.KeyValue()), phases)
			require.Error(t, err)
		}
	})

	// A phase that names a point not in the workflow's list fails before
	// anything is written: the new key's transaction rolls back.
	t.Run("RecoveryPointValidatedBeforeWriting", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		for _, point := range []string{"not_listed", idempotency.RecoveryPointStarted, idempotency.RecoveryPointFinished} {
			phases := newWorkflow(`{}`)
			phases.Start = moveTo(point)
			req := newRequest(bundle.user, testfactory.KeyValue())

			_, err := engine.Execute(ctx, req, phases)

			require.ErrorIs(t, err, idempotency.ErrUnknownRecoveryPoint, point)
			requireNoKey(t, bundle, req.Key)
		}
	})

	// The same method, path and parameters under another workflow's name
	// are another request.
	t.Run("OtherWorkflowIsMismatch", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{Workflow: testfactory.Ptr("POST /widgets/v0")})

		_, err := engine.Execute(ctx, newRequest(bundle.user, key.IdempotencyKey), newWorkflow(`{}`))

		require.ErrorIs(t, err, idempotency.ErrParamsMismatch)
		require.Equal(t, *key, *bundle.reload(t, key))
	})

	t.Run("NewKeyRecordsWorkflowAndPath", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		req := newRequest(bundle.user, testfactory.KeyValue())
		req.Path = testPath + "/42"
		var stored db.IdempotencyKey
		phases := newWorkflow(`{}`)
		phases.Start = func(_ context.Context, _ *db.Pipeline, key *db.IdempotencyKey) (idempotency.Result, error) {
			stored = *key
			return idempotency.RecoveryPoint(middlePoint), nil
		}

		_, err := engine.Execute(ctx, req, phases)

		require.NoError(t, err)
		require.Equal(t, testWorkflow, stored.Workflow)
		require.Equal(t, testPath+"/42", stored.RequestPath)
	})
}

func TestResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("DrivesKeyThroughItsWorkflow", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(middlePoint),
			RequestParams: json.RawMessage(`{"widget": 7}`),
		})

		response, err := engine.Resume(ctx, key)

		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Body: []byte(`{"restored":true}`), Status: http.StatusCreated}, response)
		require.Equal(t, idempotency.RecoveryPointFinished, bundle.reload(t, key).RecoveryPoint)
	})

	t.Run("UnknownWorkflowLeftAlone", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{
			RecoveryPoint: testfactory.Ptr(middlePoint),
			Workflow:      testfactory.Ptr("POST /widgets/v2"),
		})

		_, err := engine.Resume(ctx, key)

		require.ErrorIs(t, err, idempotency.ErrUnknownWorkflow)
		require.Equal(t, *key, *bundle.reload(t, key), "not locked, not driven")
	})

	t.Run("RestoreErrorLeavesKey", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		errRestore := errors.New("cannot restore")
		require.NoError(t, engine.Register(&idempotency.Workflow{
			Name:    "POST /broken",
			Restore: func(context.Context, *db.IdempotencyKey) (*idempotency.Phases, error) { return nil, errRestore },
		}))
		key := newKey(ctx, t, bundle.exec, bundle.user, &testfactory.IdempotencyKeyOpts{Workflow: testfactory.Ptr("POST /broken")})

		_, err := engine.Resume(ctx, key)

		require.ErrorIs(t, err, errRestore)
		require.Equal(t, *key, *bundle.reload(t, key))
	})

	t.Run("DeletedKeyNotStartedOver", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		engine := newEngine(t, bundle.exec, nil)
		key := newKey(ctx, t, bundle.exec, bundle.user, nil)
		_, err := bundle.exec.Exec(ctx, "DELETE FROM idempotency_keys WHERE id = $1", key.ID)
		require.NoError(t, err)

		_, err = engine.Resume(ctx, key)

		require.ErrorIs(t, err, idempotency.ErrKeyNotFound)
		requireNoKey(t, bundle, key.IdempotencyKey)
	})
}

// requireNoKey fails the test if the user has a key with value.
func requireNoKey(t *testing.T, bundle *testBundle, value string) {
	t.Helper()
	var n int
	require.NoError(t, bundle.exec.QueryRow(context.Background(),
		"SELECT count(*) FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2", bundle.user.ID, value).Scan(&n))
	require.Zero(t, n)
}
