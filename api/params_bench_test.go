package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// benchForm is a valid form-encoded POST /rides body.
const benchForm = "origin_lat=37.7749&origin_lon=-122.4194&target_lat=37.8044&target_lon=-122.2712"

func BenchmarkParseIdempotencyKey(b *testing.B) {
	for _, tc := range []struct {
		name, header string
	}{
		{"bare", testfactory.KeyValue()},
		{"quoted", `"` + testfactory.KeyValue() + `"`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				_, err := ParseIdempotencyKey(tc.header)
				require.NoError(b, err)
			}
		})
	}
}

func BenchmarkParseForm(b *testing.B) {
	body := []byte(benchForm)
	for b.Loop() {
		_, err := parseForm(body)
		require.NoError(b, err)
	}
}

func BenchmarkParseJSON(b *testing.B) {
	body := []byte(testfactory.ValidParams)
	for b.Loop() {
		_, err := parseJSON(body)
		require.NoError(b, err)
	}
}

// BenchmarkReadParams reads a whole request body as the handler does:
// size limit, media type, then parameters.
func BenchmarkReadParams(b *testing.B) {
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"form", "application/x-www-form-urlencoded", benchForm},
		{"json", "application/json", string(testfactory.ValidParams)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, rides.RequestPath, nil)
			req.Header.Set("Content-Type", tc.contentType)
			for b.Loop() {
				req.Body = io.NopCloser(strings.NewReader(tc.body))
				_, err := readParams(req)
				require.NoError(b, err)
			}
		})
	}
}

// BenchmarkServeReplay serves a replay of a finished key through the whole
// handler (Echo, checks, the user lookup, the engine's comparison of the
// parameters, the stored body written back), without a network: the
// handler's own cost on the path whose target is half the database's
// limit.
func BenchmarkServeReplay(b *testing.B) {
	for _, mode := range []rides.AuthMode{rides.AuthModeDemo, rides.AuthModeAPIKey} {
		b.Run("auth="+string(mode), func(b *testing.B) { benchmarkServeReplay(b, mode) })
	}
}

func benchmarkServeReplay(b *testing.B, mode rides.AuthMode) {
	ctx := b.Context()
	tx := dbtest.Tx(ctx, b)
	exec := db.Savepoint{Tx: tx}
	user := testfactory.User(ctx, b, tx, nil)
	key := testfactory.IdempotencyKey(ctx, b, tx, user, &testfactory.IdempotencyKeyOpts{
		RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointFinished),
		ResponseBody:  json.RawMessage(`{"message": "ok"}`),
		ResponseCode:  testfactory.Ptr(int32(http.StatusCreated)),
	})
	ride := &apiclient.Ride{Email: user.Email}
	if mode == rides.AuthModeAPIKey {
		token, _, err := rides.CreateAPIKey(ctx, exec, user.ID)
		require.NoError(b, err)
		ride = &apiclient.Ride{APIKey: token}
	}
	engine, err := idempotency.NewEngine(exec, nil)
	require.NoError(b, err)
	stripe, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: "http://127.0.0.1:1", APIKey: "sk_test_unused"}) // a replay never calls it
	require.NoError(b, err)
	creator, err := rides.NewCreator(exec, engine, stripe, &rides.CreatorConfig{AuthMode: mode})
	require.NoError(b, err)
	server, err := NewServer(creator, nil)
	require.NoError(b, err)
	form := "origin_lat=0&origin_lon=0&target_lat=0&target_lon=0" // testfactory.ValidParams
	ride.IdempotencyKey = key.IdempotencyKey
	ride.Body = apiclient.Body{ContentType: apiclient.ContentTypeForm, Data: form}

	for b.Loop() {
		req, err := apiclient.NewRequest(ctx, "http://example.com", ride)
		require.NoError(b, err)
		recorder := httptest.NewRecorder()
		server.ServeHTTP(recorder, req)
		require.Equal(b, http.StatusCreated, recorder.Code, recorder.Body.String())
	}
}
