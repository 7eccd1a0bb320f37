package api_test

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/apiclient"
	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// clientIP is the address newRequest gives every request, as
// httptest.NewRequest does.
const clientIP = "192.0.2.1"

// authModes are the modes the API's tests run in: forEachAuthMode runs a
// test once in each.
var authModes = []rides.AuthMode{rides.AuthModeDemo, rides.AuthModeAPIKey}

// forEachAuthMode runs test in parallel, once in each of authModes, as the
// subtests auth=demo and auth=api_key; setup, called under either, builds
// its server in that mode, and the bundle's credentials (authOf) are of that
// mode.
func forEachAuthMode(t *testing.T, test func(t *testing.T)) {
	t.Parallel()
	for _, mode := range authModes {
		t.Run(authModePrefix+string(mode), test)
	}
}

// authModePrefix starts the name of each subtest of forEachAuthMode.
const authModePrefix = "auth="

// authModeOf is the mode that forEachAuthMode runs t under, read from t's
// name; demo for a test outside forEachAuthMode.
func authModeOf(t *testing.T) rides.AuthMode {
	for part := range strings.SplitSeq(t.Name(), "/") {
		if mode, ok := strings.CutPrefix(part, authModePrefix); ok {
			return rides.AuthMode(mode)
		}
	}
	return rides.AuthModeDemo
}

// testBundle is a server wired as in production, over a fake Stripe.
type testBundle struct {
	// apiKeys holds each user's API key, by user id, in either mode.
	apiKeys map[int64]string
	// auth is the server's authentication mode.
	auth rides.AuthMode
	// declined pays with a card that Stripe always declines.
	declined *db.User
	// exec is where the server's transactions run: a rolled-back
	// transaction by default.
	exec   db.Executor
	fake   *stripefake.Server
	server *api.Server
	stripe *stripeclient.Client
	// user pays with a card that Stripe accepts.
	user *db.User
}

// setupOpts configures setup. The zero value is the default server on a
// rolled-back transaction.
type setupOpts struct {
	api *api.ServerConfig
	// auth, if set, is the server's authentication mode; by default, the
	// mode forEachAuthMode runs the test under (authModeOf).
	auth   rides.AuthMode
	engine *idempotency.EngineConfig
	// exec, if set, replaces the rolled-back transaction: a pool from
	// dbtest.NewDatabase for tests of real concurrency.
	exec  db.Executor
	rides *rides.CreatorConfig
	// wrapStripe, if set, wraps the fake Stripe's handler, to look at the
	// database while Stripe is being called.
	wrapStripe func(http.Handler) http.Handler
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	if opts == nil {
		opts = &setupOpts{}
	}
	exec := opts.exec
	if exec == nil {
		exec = db.Savepoint{Tx: dbtest.Tx(ctx, t)}
	}
	fake, baseURL := newFake(t, opts.wrapStripe)
	stripe := ridestest.NewStripe(t, baseURL)
	creatorConfig := &rides.CreatorConfig{}
	if opts.rides != nil {
		*creatorConfig = *opts.rides
	}
	creatorConfig.AuthMode = cmp.Or(opts.auth, authModeOf(t))
	b := &testBundle{
		apiKeys: make(map[int64]string),
		auth:    creatorConfig.AuthMode,
		exec:    exec,
		fake:    fake,
		server:  newServer(t, exec, stripe, opts.engine, creatorConfig, opts.api),
		stripe:  stripe,
	}
	b.declined = b.newUser(t, "tok_chargeCustomerFail")
	b.user = b.newUser(t, "tok_visa")
	return b
}

// newServer returns an API server on its own engine and creator, failing the
// test if a config is rejected.
func newServer(t *testing.T, exec db.Executor, stripe *stripeclient.Client, engineConfig *idempotency.EngineConfig, creatorConfig *rides.CreatorConfig, serverConfig *api.ServerConfig) *api.Server {
	t.Helper()
	engine, err := idempotency.NewEngine(exec, engineConfig)
	require.NoError(t, err)
	creator, err := rides.NewCreator(exec, engine, stripe, creatorConfig)
	require.NoError(t, err)
	server, err := api.NewServer(creator, serverConfig)
	require.NoError(t, err)
	return server
}

// newFake starts a fake Stripe, its handler wrapped by wrap if set, and
// returns it with its base URL.
func newFake(t *testing.T, wrap func(http.Handler) http.Handler) (*stripefake.Server, string) {
	t.Helper()
	if wrap == nil {
		return stripefaketest.NewServer(t, stripefake.Config{})
	}
	fake := stripefake.New(stripefake.Config{})
	server := httptest.NewServer(wrap(fake))
	t.Cleanup(server.Close)
	return fake, server.URL
}

// newUser inserts a user whose Stripe customer pays with source, with an
// API key.
func (b *testBundle) newUser(t *testing.T, source string) *db.User {
	t.Helper()
	ctx := context.Background()
	email := "rider-" + testfactory.KeyValue() + "@example.com"
	customerID, err := b.stripe.CustomerCreate(ctx, email, source)
	require.NoError(t, err)
	user := testfactory.User(ctx, t, b.exec, &testfactory.UserOpts{Email: &email, StripeCustomerID: &customerID})
	b.addAPIKey(t, user)
	return user
}

// addAPIKey gives user an API key, the one authOf sends.
func (b *testBundle) addAPIKey(t *testing.T, user *db.User) {
	t.Helper()
	token, _, err := rides.CreateAPIKey(context.Background(), b.exec, user.ID)
	require.NoError(t, err)
	b.apiKeys[user.ID] = token
}

// authOf is the Authorization header that authenticates user in the
// server's mode: the user's email in demo mode, "Bearer <key>" in api_key
// mode.
func (b *testBundle) authOf(user *db.User) string {
	if b.auth == rides.AuthModeDemo {
		return user.Email
	}
	return "Bearer " + b.apiKeys[user.ID]
}

// unknownAuth is a credential of the server's mode that authenticates no
// user: an email no user has, or a well-formed API key no row has.
func (b *testBundle) unknownAuth() string {
	if b.auth == rides.AuthModeDemo {
		return "nobody-" + testfactory.KeyValue() + "@example.com"
	}
	return "Bearer rr_9000000000000000000_" + strings.Repeat("0", 64)
}

// revokedAuth is a credential of a new API key of user's, revoked.
func (b *testBundle) revokedAuth(t *testing.T, user *db.User) string {
	t.Helper()
	ctx := context.Background()
	token, key, err := rides.CreateAPIKey(ctx, b.exec, user.ID)
	require.NoError(t, err)
	_, err = db.New().APIKeyRevoke(ctx, b.exec, key.ID)
	require.NoError(t, err)
	return "Bearer " + token
}

// apiRide is a POST /rides as user for apiclient, with the credential of the
// server's mode.
func (b *testBundle) apiRide(user *db.User, key string, body apiclient.Body) *apiclient.Ride {
	ride := &apiclient.Ride{IdempotencyKey: key, Body: body}
	if b.auth == rides.AuthModeDemo {
		ride.Email = user.Email
	} else {
		ride.APIKey = b.apiKeys[user.ID]
	}
	return ride
}

// validForm is the original's VALID_PARAMS, form-encoded.
func validForm() url.Values {
	return url.Values{
		"origin_lat": {"0.0"},
		"origin_lon": {"0.0"},
		"target_lat": {"0.0"},
		"target_lon": {"0.0"},
	}
}

// newRequest is a POST /rides with the Authorization header authorization
// (see testBundle.authOf), under key, with body of contentType, built by the
// client every caller uses. An empty authorization, key or contentType
// leaves its header out.
func newRequest(authorization, key, contentType, body string) *http.Request {
	r, err := apiclient.NewRequest(context.Background(), "http://example.com", &apiclient.Ride{
		IdempotencyKey: key,
		Body:           apiclient.Body{ContentType: contentType, Data: body},
	})
	if err != nil {
		panic(err) // a constant URL always parses
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	r.RemoteAddr = clientIP + ":1234" // as httptest.NewRequest
	return r
}

// newFormRequest is a form-encoded POST /rides.
func newFormRequest(authorization, key string, form url.Values) *http.Request {
	body := apiclient.Form(form)
	return newRequest(authorization, key, body.ContentType, body.Data)
}

func (b *testBundle) serve(r *http.Request) *httptest.ResponseRecorder {
	recorder := httptest.NewRecorder()
	b.server.ServeHTTP(recorder, r)
	return recorder
}

// post sends a form-encoded POST /rides as user.
func (b *testBundle) post(user *db.User, key string, form url.Values) *httptest.ResponseRecorder {
	return b.serve(newFormRequest(b.authOf(user), key, form))
}

// requireCreated requires a first (not replayed) 201 with the success
// message, and returns its body.
func requireCreated(t *testing.T, recorder *httptest.ResponseRecorder) *rides.CreatedBody {
	t.Helper()
	require.Equal(t, http.StatusCreated, recorder.Code, "body: %s", recorder.Body)
	require.Equal(t, "application/json", recorder.Header().Get("Content-Type"))
	require.Empty(t, recorder.Header().Get(apiclient.HeaderIdempotentReplayed))
	var body rides.CreatedBody
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &body))
	require.Equal(t, rides.MessageOK, body.Message)
	require.NotNil(t, body.Ride)
	return &body
}

// requireProblem requires an RFC 9457 problem of the given status and kind,
// with the four members and nothing else (no stack, no internal message),
// and returns it.
func requireProblem(t *testing.T, recorder *httptest.ResponseRecorder, status int, kind string) *problem.Details {
	t.Helper()
	require.Equal(t, status, recorder.Code, "body: %s", recorder.Body)
	require.Equal(t, problem.ContentType, recorder.Header().Get("Content-Type"))
	var members map[string]any
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &members))
	require.ElementsMatch(t, []string{"type", "title", "status", "detail"}, mapKeys(members), "body: %s", recorder.Body)
	var details problem.Details
	require.NoError(t, json.Unmarshal(recorder.Body.Bytes(), &details))
	require.Equal(t, problem.TypeBase+kind, details.Type)
	require.Equal(t, http.StatusText(status), details.Title)
	require.Equal(t, status, details.Status)
	require.NotEmpty(t, details.Detail)
	return &details
}

// requireReplay requires that recorder replays first: same status, same
// bytes, marked Idempotent-Replayed.
func requireReplay(t *testing.T, first, recorder *httptest.ResponseRecorder) {
	t.Helper()
	require.Equal(t, first.Code, recorder.Code)
	require.Equal(t, first.Body.String(), recorder.Body.String())
	require.Equal(t, first.Header().Get("Content-Type"), recorder.Header().Get("Content-Type"))
	require.Equal(t, "true", recorder.Header().Get(apiclient.HeaderIdempotentReplayed))
}

func mapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	return keys
}

// key reads user's idempotency key with the given value.
func (b *testBundle) key(t *testing.T, user *db.User, value string) *db.IdempotencyKey {
	t.Helper()
	ctx := context.Background()
	row, err := db.New().UserGetWithIdempotencyKey(ctx, b.exec, &db.UserGetWithIdempotencyKeyParams{Email: user.Email, IdempotencyKey: value})
	require.NoError(t, err)
	require.NotNil(t, row.KeyID, "user %s has no key %s", user.Email, value)
	key, err := db.New().IdempotencyKeyGetByID(ctx, b.exec, *row.KeyID)
	require.NoError(t, err)
	return key
}

// requireNoKey requires that user has no key with the given value.
func (b *testBundle) requireNoKey(t *testing.T, user *db.User, value string) {
	t.Helper()
	row, err := db.New().UserGetWithIdempotencyKey(context.Background(), b.exec, &db.UserGetWithIdempotencyKeyParams{Email: user.Email, IdempotencyKey: value})
	require.NoError(t, err)
	require.Nil(t, row.KeyID)
}

// requireUnlockedAt requires key to be unlocked, unfinished, at
// recoveryPoint, with no response stored.
func requireUnlockedAt(t *testing.T, key *db.IdempotencyKey, recoveryPoint string) {
	t.Helper()
	require.Equal(t, recoveryPoint, key.RecoveryPoint)
	require.Nil(t, key.LockedAt)
	require.Nil(t, key.LockToken)
	require.Nil(t, key.ResponseCode)
	require.Nil(t, key.ResponseBody)
}

// ride reads the ride of key.
func (b *testBundle) ride(t *testing.T, key *db.IdempotencyKey) *db.Ride {
	t.Helper()
	ride, err := db.New().RideGetByIdempotencyKeyID(context.Background(), b.exec, &key.ID)
	require.NoError(t, err)
	return ride
}

// receipts returns the send_ride_receipt jobs staged for ride.
func (b *testBundle) receipts(t *testing.T, ride *db.Ride) []rides.ReceiptArgs {
	t.Helper()
	rows, err := b.exec.Query(context.Background(),
		"SELECT job_args FROM staged_jobs WHERE job_name = $1 AND (job_args->>'ride_id')::bigint = $2",
		rides.JobNameSendRideReceipt, ride.ID)
	require.NoError(t, err)
	defer rows.Close()
	var receipts []rides.ReceiptArgs
	for rows.Next() {
		var args rides.ReceiptArgs
		require.NoError(t, rows.Scan(&args))
		receipts = append(receipts, args)
	}
	require.NoError(t, rows.Err())
	return receipts
}

// requireRideCharged requires user's key to be finished with 201 and its
// ride to be charged once, as the spec says: the ride carries the only
// charge the fake made for the key, of $20 with the key's Stripe
// idempotency key and metadata, one receipt job is staged, and body (if
// given) shows the ride. It returns the ride.
func (b *testBundle) requireRideCharged(t *testing.T, user *db.User, value string, body *rides.CreatedBody) *db.Ride {
	t.Helper()
	key := b.key(t, user, value)
	require.Equal(t, idempotency.RecoveryPointFinished, key.RecoveryPoint)
	require.Equal(t, int32(http.StatusCreated), *key.ResponseCode)
	require.Nil(t, key.LockedAt)

	ride := b.ride(t, key)
	require.NotNil(t, ride.StripeChargeID)
	stripeKey := rides.StripeIdempotencyKey(key)
	var charges []stripefake.Charge
	for _, charge := range b.fake.Charges() {
		if charge.Metadata[rides.MetadataIdempotencyKey] == stripeKey {
			charges = append(charges, charge)
		}
	}
	require.Len(t, charges, 1, "charges for the key in Stripe")
	charge := charges[0]
	require.Equal(t, *ride.StripeChargeID, charge.ID)
	require.Equal(t, int64(rides.ChargeAmount), charge.Amount)
	require.Equal(t, rides.ChargeCurrency, charge.Currency)
	require.Equal(t, user.StripeCustomerID, charge.Customer)
	require.Equal(t, stripefake.ChargeSucceeded, charge.Status)
	require.Equal(t, stripeKey, charge.IdempotencyKey, "the key's stable Stripe idempotency key")
	require.Equal(t, map[string]string{
		rides.MetadataIdempotencyKey:   stripeKey,
		rides.MetadataIdempotencyKeyID: itoa(key.ID),
		rides.MetadataRideID:           itoa(ride.ID),
	}, charge.Metadata)

	require.Equal(t, []rides.ReceiptArgs{{
		Amount:   rides.ChargeAmount,
		Currency: rides.ChargeCurrency,
		RideID:   ride.ID,
		UserID:   user.ID,
	}}, b.receipts(t, ride))

	if body != nil {
		require.Equal(t, ride.ID, body.Ride.ID)
		require.Equal(t, ride.StripeChargeID, body.Ride.StripeChargeID)
		require.Equal(t, ride.OriginLat, body.Ride.OriginLat)
		require.Equal(t, ride.OriginLon, body.Ride.OriginLon)
		require.Equal(t, ride.TargetLat, body.Ride.TargetLat)
		require.Equal(t, ride.TargetLon, body.Ride.TargetLon)
		require.True(t, ride.CreatedAt.Equal(body.Ride.CreatedAt))
	}
	return ride
}

// dbNow is the database's clock: frozen at the start of a test's
// transaction.
func (b *testBundle) dbNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, b.exec.QueryRow(context.Background(), "SELECT now()").Scan(&now))
	return now
}

func itoa(i int64) string {
	return strconv.FormatInt(i, 10)
}

// chargeAsRides charges user for key's ride exactly as the ride workflow
// does (the same Stripe idempotency key and metadata): the charge of an
// earlier attempt that died before recording it.
func (b *testBundle) chargeAsRides(user *db.User, key *db.IdempotencyKey, ride *db.Ride) (*stripe.Charge, error) {
	return b.stripe.ChargeCreate(context.Background(), rides.NewChargeParams(user.StripeCustomerID, key, ride.ID))
}
