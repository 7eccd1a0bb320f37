// Package testfactory inserts fixture rows with sensible defaults, for tests.
// Every option is a pointer or nil-able; nil means the default.
package testfactory

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rocketrides/rocketrides/db"
)

// ValidParams are the original's VALID_PARAMS: a ride from (0, 0) to (0, 0).
var ValidParams = json.RawMessage(`{"origin_lat": 0.0, "origin_lon": 0.0, "target_lat": 0.0, "target_lon": 0.0}`)

// KeyValue returns a fresh idempotency key value, as a client would make.
func KeyValue() string {
	return uuid.NewString()
}

// UserOpts are the options of User.
type UserOpts struct {
	Email            *string
	StripeCustomerID *string
}

// User inserts a user. The email and customer id are unique unless given.
func User(ctx context.Context, tb testing.TB, exec db.DBTX, opts *UserOpts) *db.User {
	tb.Helper()
	if opts == nil {
		opts = &UserOpts{}
	}
	unique := uuid.NewString()
	user, err := db.New().UserUpsert(ctx, exec, &db.UserUpsertParams{
		Email:            deref(opts.Email, "user-"+unique+"@example.com"),
		StripeCustomerID: deref(opts.StripeCustomerID, "cus_test_"+unique),
	})
	if err != nil {
		tb.Fatalf("testfactory: inserting user: %s", err)
	}
	return user
}

// IdempotencyKeyOpts are the options of IdempotencyKey. By default the key
// is new (a fresh value), unlocked, at started, with ValidParams for POST
// /rides (workflow "POST /rides", path /rides), created and last run now.
type IdempotencyKeyOpts struct {
	CreatedAt      *time.Time
	IdempotencyKey *string
	LastRunAt      *time.Time
	LockedAt       *time.Time
	LockToken      *uuid.UUID
	RecoveryPoint  *string
	RequestParams  json.RawMessage
	RequestPath    *string
	ResponseBody   json.RawMessage
	ResponseCode   *int32
	RunCount       *int32
	Workflow       *string
}

// IdempotencyKey inserts an idempotency key of user's. A LockedAt without a
// LockToken gets a random token.
func IdempotencyKey(ctx context.Context, tb testing.TB, exec db.DBTX, user *db.User, opts *IdempotencyKeyOpts) *db.IdempotencyKey {
	tb.Helper()
	if opts == nil {
		opts = &IdempotencyKeyOpts{}
	}
	lockToken := opts.LockToken
	if opts.LockedAt != nil && lockToken == nil {
		lockToken = Ptr(uuid.New())
	}
	params := opts.RequestParams
	if params == nil {
		params = ValidParams
	}
	key, err := db.New().IdempotencyKeyInsertFull(ctx, exec, &db.IdempotencyKeyInsertFullParams{
		CreatedAt:      opts.CreatedAt,
		IdempotencyKey: deref(opts.IdempotencyKey, KeyValue()),
		LastRunAt:      opts.LastRunAt,
		LockedAt:       opts.LockedAt,
		LockToken:      lockToken,
		RecoveryPoint:  deref(opts.RecoveryPoint, "started"),
		RequestMethod:  "POST",
		RequestParams:  params,
		RequestPath:    deref(opts.RequestPath, "/rides"),
		ResponseBody:   opts.ResponseBody,
		ResponseCode:   opts.ResponseCode,
		RunCount:       deref(opts.RunCount, 1),
		UserID:         user.ID,
		Workflow:       deref(opts.Workflow, "POST /rides"),
	})
	if err != nil {
		tb.Fatalf("testfactory: inserting idempotency key: %s", err)
	}
	return key
}

// RideOpts are the options of Ride.
type RideOpts struct {
	IdempotencyKeyID *int64
	StripeChargeID   *string
}

// Ride inserts a ride of user's from (0, 0) to (0, 0).
func Ride(ctx context.Context, tb testing.TB, exec db.DBTX, user *db.User, opts *RideOpts) *db.Ride {
	tb.Helper()
	if opts == nil {
		opts = &RideOpts{}
	}
	queries := db.New()
	ride, err := queries.RideInsert(ctx, exec, &db.RideInsertParams{IdempotencyKeyID: opts.IdempotencyKeyID, UserID: user.ID})
	if err != nil {
		tb.Fatalf("testfactory: inserting ride: %s", err)
	}
	if opts.StripeChargeID != nil {
		ride, err = queries.RideSetStripeChargeID(ctx, exec, &db.RideSetStripeChargeIDParams{ID: ride.ID, StripeChargeID: opts.StripeChargeID})
		if err != nil {
			tb.Fatalf("testfactory: setting ride's charge: %s", err)
		}
	}
	return ride
}

// StagedJob stages a job with the given name and JSON args.
func StagedJob(ctx context.Context, tb testing.TB, exec db.DBTX, name string, args json.RawMessage) {
	tb.Helper()
	if err := db.New().StagedJobInsert(ctx, exec, &db.StagedJobInsertParams{JobName: name, JobArgs: args}); err != nil {
		tb.Fatalf("testfactory: staging job: %s", err)
	}
}

// Ptr returns a pointer to v, for options.
func Ptr[T any](v T) *T { return &v }

func deref[T any](p *T, fallback T) T {
	if p == nil {
		return fallback
	}
	return *p
}
