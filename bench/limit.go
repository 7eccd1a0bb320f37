package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
)

// limit issues the statements that the API issues for a request, and
// nothing else: the same generated queries of package db, grouped in the
// same transactions at the same isolation level, with the same Stripe call
// between them, on the same pool, but with no HTTP, no handler and no
// engine. Its throughput is the most the database (with this Stripe) allows
// the API. Its transactions go through db.WithTx with the engine's retry
// budget, so that a serialization failure costs the limit the retries it
// costs the API.
type limit struct {
	coords  rides.Params
	params  json.RawMessage
	pool    *pgxpool.Pool
	queries *db.Queries
	stripe  *stripeclient.Client
	txOpts  db.TxOptions
}

// newLimit returns a limit whose transactions run at isolation, retried as
// idempotency.NewEngine retries them by default.
func newLimit(pool *pgxpool.Pool, stripe *stripeclient.Client, isolation pgx.TxIsoLevel) (*limit, error) {
	coords := rideParams()
	params, err := json.Marshal(&coords)
	if err != nil {
		return nil, fmt.Errorf("marshaling ride params: %w", err)
	}
	return &limit{
		coords:  coords,
		params:  params,
		pool:    pool,
		queries: db.New(),
		stripe:  stripe,
		txOpts:  db.TxOptions{Isolation: isolation, MaxAttempts: maxAttempts(isolation)},
	}, nil
}

// maxAttempts is the engine's default retry budget at isolation.
func maxAttempts(isolation pgx.TxIsoLevel) int {
	if isolation == pgx.Serializable {
		return idempotency.MaxAttemptsSerializableDefault
	}
	return db.TxMaxAttemptsDefault
}

// newKey is a request with a new key: the user lookup, the key phase
// (key, ride, audit record, recovery point), the charge, and the phase that
// records it and finishes the key.
func (l *limit) newKey(ctx context.Context, email, keyValue string) error {
	user, err := l.authenticate(ctx, email, keyValue, "")
	if err != nil {
		return err
	}
	key, ride, err := l.createRide(ctx, user, keyValue)
	if err != nil {
		return err
	}
	return l.chargeAndFinish(ctx, user, key, ride)
}

// replay is a request with a finished key: the user lookup, which reads the
// key's stored response too.
func (l *limit) replay(ctx context.Context, email, keyValue string) error {
	_, err := l.authenticate(ctx, email, keyValue, idempotency.RecoveryPointFinished)
	return err
}

// failure is a request with raise_error: the user lookup, the key phase,
// then the unlock that the engine does when the request fails.
func (l *limit) failure(ctx context.Context, email, keyValue string) error {
	user, err := l.authenticate(ctx, email, keyValue, "")
	if err != nil {
		return err
	}
	key, _, err := l.createRide(ctx, user, keyValue)
	if err != nil {
		return err
	}
	_, err = l.queries.IdempotencyKeyUnlock(ctx, l.pool, &db.IdempotencyKeyUnlockParams{ID: key.ID, LockToken: key.LockToken})
	if err != nil {
		return fmt.Errorf("unlocking key: %w", err)
	}
	return nil
}

// recovery is the retry of a failed request: the user lookup, the key
// phase that finds the key and locks it, the ride read, the charge and the
// phase that finishes the key.
func (l *limit) recovery(ctx context.Context, email, keyValue string) error {
	user, err := l.authenticate(ctx, email, keyValue, rides.RecoveryPointRideCreated)
	if err != nil {
		return err
	}
	key, err := l.lockExisting(ctx, user, keyValue)
	if err != nil {
		return err
	}
	ride, err := l.queries.RideGetByIdempotencyKeyID(ctx, l.pool, &key.ID)
	if err != nil {
		return fmt.Errorf("getting ride: %w", err)
	}
	return l.chargeAndFinish(ctx, user, key, ride)
}

// authenticate is UserGetWithIdempotencyKey. It checks that the key is at
// wantRecoveryPoint, or absent when that is empty.
func (l *limit) authenticate(ctx context.Context, email, keyValue, wantRecoveryPoint string) (*db.User, error) {
	row, err := l.queries.UserGetWithIdempotencyKey(ctx, l.pool, &db.UserGetWithIdempotencyKeyParams{Email: email, IdempotencyKey: keyValue})
	if err != nil {
		return nil, fmt.Errorf("authenticating: %w", err)
	}
	got := ""
	if row.RecoveryPoint != nil {
		got = *row.RecoveryPoint
	}
	if got != wantRecoveryPoint {
		return nil, fmt.Errorf("key %s is at recovery point %q, want %q", keyValue, got, wantRecoveryPoint)
	}
	return &row.User, nil
}

// createRide is the key phase of a new key: it inserts the key, locked,
// the ride and its audit record, and moves the key to ride_created.
func (l *limit) createRide(ctx context.Context, user *db.User, keyValue string) (*db.IdempotencyKey, *db.Ride, error) {
	var (
		key  *db.IdempotencyKey
		ride *db.Ride
	)
	err := db.WithTx(ctx, l.pool, l.txOpts, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		key, err = l.queries.IdempotencyKeyInsert(ctx, tx, &db.IdempotencyKeyInsertParams{
			IdempotencyKey: keyValue,
			LockToken:      new(uuid.New()),
			RequestMethod:  rides.RequestMethod,
			RequestParams:  l.params,
			RequestPath:    rides.RequestPath,
			UserID:         user.ID,
			Workflow:       rides.WorkflowCreate,
		})
		if err != nil {
			return fmt.Errorf("inserting key: %w", err)
		}
		ride, err = l.queries.RideInsert(ctx, tx, &db.RideInsertParams{
			IdempotencyKeyID: &key.ID,
			OriginLat:        l.coords.OriginLat,
			OriginLon:        l.coords.OriginLon,
			TargetLat:        l.coords.TargetLat,
			TargetLon:        l.coords.TargetLon,
			UserID:           user.ID,
		})
		if err != nil {
			return fmt.Errorf("inserting ride: %w", err)
		}
		err = l.queries.AuditRecordInsert(ctx, tx, &db.AuditRecordInsertParams{
			Action:       rides.AuditActionRideCreated,
			Data:         key.RequestParams,
			OriginIP:     netip.AddrFrom4([4]byte{127, 0, 0, 1}), // the load generator's, as the API records it
			ResourceID:   ride.ID,
			ResourceType: "ride",
			UserID:       user.ID,
		})
		if err != nil {
			return fmt.Errorf("inserting audit record: %w", err)
		}
		key, err = l.queries.IdempotencyKeySetRecoveryPoint(ctx, tx, &db.IdempotencyKeySetRecoveryPointParams{
			ID:            key.ID,
			RecoveryPoint: rides.RecoveryPointRideCreated,
		})
		if err != nil {
			return fmt.Errorf("setting recovery point: %w", err)
		}
		return nil
	})
	return key, ride, err
}

// lockExisting is the key phase of a retry: the insert finds the key there,
// which is then read FOR UPDATE and locked.
func (l *limit) lockExisting(ctx context.Context, user *db.User, keyValue string) (*db.IdempotencyKey, error) {
	var key *db.IdempotencyKey
	err := db.WithTx(ctx, l.pool, l.txOpts, func(ctx context.Context, tx pgx.Tx) error {
		_, err := l.queries.IdempotencyKeyInsert(ctx, tx, &db.IdempotencyKeyInsertParams{
			IdempotencyKey: keyValue,
			LockToken:      new(uuid.New()),
			RequestMethod:  rides.RequestMethod,
			RequestParams:  l.params,
			RequestPath:    rides.RequestPath,
			UserID:         user.ID,
			Workflow:       rides.WorkflowCreate,
		})
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("inserting existing key: want no row, got %w", err)
		}
		existing, err := l.queries.IdempotencyKeyGetForUpdate(ctx, tx, &db.IdempotencyKeyGetForUpdateParams{
			IdempotencyKey:     keyValue,
			LockTimeoutSeconds: idempotency.LockTimeoutDefault.Seconds(),
			UserID:             user.ID,
		})
		if err != nil {
			return fmt.Errorf("reading key: %w", err)
		}
		key, err = l.queries.IdempotencyKeyLock(ctx, tx, &db.IdempotencyKeyLockParams{ID: existing.IdempotencyKey.ID, LockToken: new(uuid.New())})
		if err != nil {
			return fmt.Errorf("locking key: %w", err)
		}
		return nil
	})
	return key, err
}

// chargeAndFinish charges the user through Stripe with no transaction open,
// then, in one transaction, checks the key's lock, records the charge on
// the ride, stages the receipt job and finishes the key with 201.
func (l *limit) chargeAndFinish(ctx context.Context, user *db.User, key *db.IdempotencyKey, ride *db.Ride) error {
	charge, err := l.stripe.ChargeCreate(ctx, rides.NewChargeParams(user.StripeCustomerID, key, ride.ID))
	if err != nil {
		return err
	}
	return db.WithTx(ctx, l.pool, l.txOpts, func(ctx context.Context, tx pgx.Tx) error {
		locked, err := l.queries.IdempotencyKeyGetLockedForUpdate(ctx, tx, &db.IdempotencyKeyGetLockedForUpdateParams{ID: key.ID, LockToken: key.LockToken})
		if err != nil {
			return fmt.Errorf("checking key lock: %w", err)
		}
		ride, err := l.queries.RideSetStripeChargeID(ctx, tx, &db.RideSetStripeChargeIDParams{ID: ride.ID, StripeChargeID: &charge.ID})
		if err != nil {
			return fmt.Errorf("recording charge: %w", err)
		}
		jobArgs, err := json.Marshal(&rides.ReceiptArgs{Amount: rides.ChargeAmount, Currency: rides.ChargeCurrency, RideID: ride.ID, UserID: ride.UserID})
		if err != nil {
			return fmt.Errorf("marshaling job args: %w", err)
		}
		err = l.queries.StagedJobInsert(ctx, tx, &db.StagedJobInsertParams{JobName: rides.JobNameSendRideReceipt, JobArgs: jobArgs})
		if err != nil {
			return fmt.Errorf("staging receipt job: %w", err)
		}
		body, err := json.Marshal(rides.NewCreatedBody(ride))
		if err != nil {
			return fmt.Errorf("marshaling response: %w", err)
		}
		_, err = l.queries.IdempotencyKeyFinish(ctx, tx, &db.IdempotencyKeyFinishParams{
			ID:           locked.ID,
			ResponseBody: body,
			ResponseCode: new(int32(http.StatusCreated)),
		})
		if err != nil {
			return fmt.Errorf("finishing key: %w", err)
		}
		return nil
	})
}
