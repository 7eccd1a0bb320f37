package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The limit's SQL, written here by hand: it shares nothing with package db
// or the engine, so that it stays the yardstick of the code it judges.
// Each transaction is one statement (its writes in CTEs), so one round trip
// and one implicit transaction; the user's read before it is the request's
// authentication, which any implementation does first.
const (
	// sqlUserWithKey reads the user by email with the key, if any: the
	// columns a request needs to authenticate and to replay.
	sqlUserWithKey = `SELECT u.id, u.stripe_customer_id, k.id, k.recovery_point, k.request_method, k.request_path,
	k.request_params, k.response_code, k.response_body
FROM users u
LEFT JOIN idempotency_keys k ON k.user_id = u.id AND k.idempotency_key = $2
WHERE u.email = $1`

	// sqlCreateRide is a new key's first transaction: the key, locked, at
	// the recovery point after the ride's; the ride; its audit record.
	sqlCreateRide = `WITH k AS (
	INSERT INTO idempotency_keys (idempotency_key, locked_at, lock_token, recovery_point,
		request_method, request_params, request_path, user_id, workflow)
	VALUES ($1, now(), $2, 'ride_created', 'POST', $3, '/rides', $4, 'POST /rides')
	RETURNING id, request_params, stripe_idempotency_key
), r AS (
	INSERT INTO rides (idempotency_key_id, origin_lat, origin_lon, target_lat, target_lon, user_id)
	SELECT k.id, $5, $6, $7, $8, $4 FROM k
	RETURNING id
), a AS (
	INSERT INTO audit_records (action, data, origin_ip, resource_id, resource_type, user_id)
	SELECT 'ride.created', k.request_params, '127.0.0.1', r.id, 'ride', $4 FROM k, r
)
SELECT k.id, k.stripe_idempotency_key, r.id FROM k, r`

	// sqlFinishRide is a new key's second transaction: the lock check,
	// the charge recorded on the ride, the receipt job staged, the key
	// finished with the 201 and its body.
	sqlFinishRide = `WITH k AS (
	SELECT id FROM idempotency_keys WHERE id = $1 AND lock_token = $2 FOR UPDATE
), r AS (
	UPDATE rides SET stripe_charge_id = $3 WHERE id = $4 AND EXISTS (SELECT 1 FROM k)
	RETURNING id, created_at, origin_lat, origin_lon, target_lat, target_lon, stripe_charge_id, user_id
), j AS (
	INSERT INTO staged_jobs (job_name, job_args)
	SELECT 'send_ride_receipt', jsonb_build_object('amount', 2000, 'currency', 'usd', 'ride_id', r.id, 'user_id', r.user_id) FROM r
)
UPDATE idempotency_keys
SET recovery_point = 'finished', response_code = 201, locked_at = NULL, lock_token = NULL,
	response_body = jsonb_build_object('message', 'Payment accepted. Your pilot is on their way!', 'ride', jsonb_build_object(
		'created_at', r.created_at, 'id', r.id, 'origin_lat', r.origin_lat, 'origin_lon', r.origin_lon,
		'stripe_charge_id', r.stripe_charge_id, 'target_lat', r.target_lat, 'target_lon', r.target_lon))
FROM r
WHERE idempotency_keys.id = $1
RETURNING idempotency_keys.response_body`

	// sqlClaimRide is a cancel's first transaction: the key, locked, at
	// the recovery point after the claim's; the claim of the user's
	// charged, uncancelled ride.
	sqlClaimRide = `WITH k AS (
	INSERT INTO idempotency_keys (idempotency_key, locked_at, lock_token, recovery_point,
		request_method, request_params, request_path, user_id, workflow)
	VALUES ($1, now(), $2, 'ride_claimed', 'POST', jsonb_build_object('ride_id', $3::bigint), '/rides/' || $3 || '/cancel', $4,
		'POST /rides/{id}/cancel')
	RETURNING id, stripe_idempotency_key
), ride AS (
	SELECT r.id, r.stripe_charge_id FROM rides r
	WHERE r.id = $3 AND r.user_id = $4 AND r.stripe_charge_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM ride_cancellations c WHERE c.ride_id = r.id)
), c AS (
	INSERT INTO ride_cancellations (idempotency_key_id, ride_id, user_id)
	SELECT k.id, ride.id, $4 FROM k, ride
	ON CONFLICT (ride_id) DO NOTHING
	RETURNING id
)
SELECT k.id, k.stripe_idempotency_key, c.id, ride.stripe_charge_id FROM k, c, ride`

	// sqlFinishCancel is a cancel's second transaction: the lock check,
	// the refund recorded on the claim, the audit record, the receipt job
	// staged, the key finished with the 200 and its body.
	sqlFinishCancel = `WITH k AS (
	SELECT id, request_params FROM idempotency_keys WHERE id = $1 AND lock_token = $2 FOR UPDATE
), c AS (
	UPDATE ride_cancellations SET stripe_refund_id = $3, cancelled_at = now()
	WHERE id = $4 AND EXISTS (SELECT 1 FROM k)
	RETURNING ride_id, stripe_refund_id, cancelled_at, user_id
), a AS (
	INSERT INTO audit_records (action, data, origin_ip, resource_id, resource_type, user_id)
	SELECT 'ride.cancelled', k.request_params, '127.0.0.1', c.ride_id, 'ride', c.user_id FROM k, c
), j AS (
	INSERT INTO staged_jobs (job_name, job_args)
	SELECT 'send_cancellation_receipt', jsonb_build_object('amount', 2000, 'currency', 'usd', 'ride_id', c.ride_id,
		'stripe_refund_id', c.stripe_refund_id, 'user_id', c.user_id) FROM c
)
UPDATE idempotency_keys
SET recovery_point = 'finished', response_code = 200, locked_at = NULL, lock_token = NULL,
	response_body = jsonb_build_object('message', 'Ride cancelled. Your refund is on its way.', 'ride', jsonb_build_object(
		'created_at', r.created_at, 'id', r.id, 'origin_lat', r.origin_lat, 'origin_lon', r.origin_lon,
		'stripe_charge_id', r.stripe_charge_id, 'target_lat', r.target_lat, 'target_lon', r.target_lon,
		'cancelled_at', c.cancelled_at, 'status', 'cancelled', 'stripe_refund_id', c.stripe_refund_id))
FROM c JOIN rides r ON r.id = c.ride_id
WHERE idempotency_keys.id = $1
RETURNING idempotency_keys.response_body`
)

// rideRequestParams is the stored request of every ride the bench asks
// for, as the API stores it.
const rideRequestParams = `{"origin_lat": 37.7749, "origin_lon": -122.4194, "target_lat": 37.8044, "target_lon": -122.2712}`

// limitMaxAttempts is how many times the limit sends a statement that
// failed to serialize (at serializable) or deadlocked; between attempts it
// waits a random pause under limitBackoffBase·2^attempt, at most
// limitBackoffMax (full jitter, which spreads out the statements that
// conflicted).
const (
	limitMaxAttempts = 40
	limitBackoffBase = time.Millisecond
	limitBackoffMax  = 50 * time.Millisecond
)

// errLockLost is a second transaction that found its key no longer locked
// by its token.
var errLockLost = errors.New("the key's lock was lost")

// limit is each scenario's work in its best raw form: the same rows written
// as the API writes them, each transaction in one round trip, the same
// Stripe fake call between the transactions, on a pool of the API's size,
// with no HTTP and no handler.
type limit struct {
	pool   *pgxpool.Pool
	stripe *stripeCaller

	// serializable is set when the pool's transactions default to
	// serializable; the user's read then runs at read committed, as the
	// API's does.
	serializable bool
}

// newLimit connects a pool of poolMaxConns to databaseURL, whose implicit
// transactions run at isolation, and calls the Stripe at stripeURL.
func newLimit(ctx context.Context, databaseURL string, poolMaxConns, concurrency int, isolation string, stripeURL string) (*limit, error) {
	config, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the limit's database URL: %w", err)
	}
	config.MaxConns = int32(poolMaxConns)
	config.ConnConfig.RuntimeParams["default_transaction_isolation"] = isolationSetting(isolation)
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("connecting the limit's pool: %w", err)
	}
	return &limit{pool: pool, stripe: newStripeCaller(stripeURL, concurrency), serializable: isolation == isolationSerializable}, nil
}

// isolationSetting is isolation (read_committed or serializable) as
// default_transaction_isolation spells it.
func isolationSetting(isolation string) string {
	if isolation == isolationSerializable {
		return "serializable"
	}
	return "read committed"
}

// close closes the pool.
func (l *limit) close() {
	l.pool.Close()
}

// keyRow is what sqlUserWithKey reads.
type keyRow struct {
	userID        int64
	customerID    string
	keyID         *int64
	recoveryPoint *string
	method, path  *string
	params        []byte
	responseCode  *int32
	responseBody  []byte
}

// readUserWithKey runs sqlUserWithKey, at read committed: where the
// pool's default is serializable, in a read committed transaction block
// sent in the same round trip (a read-only serializable transaction can
// fail to serialize; the API's read, outside its phases, cannot).
func (l *limit) readUserWithKey(ctx context.Context, email, key string) (*keyRow, error) {
	var row keyRow
	scan := func(r pgx.Row) error {
		return r.Scan(&row.userID, &row.customerID, &row.keyID, &row.recoveryPoint,
			&row.method, &row.path, &row.params, &row.responseCode, &row.responseBody)
	}
	var err error
	if l.serializable {
		batch := &pgx.Batch{}
		batch.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
		batch.Queue(sqlUserWithKey, email, key).QueryRow(scan)
		batch.Queue("COMMIT")
		err = l.pool.SendBatch(ctx, batch).Close()
	} else {
		err = scan(l.pool.QueryRow(ctx, sqlUserWithKey, email, key))
	}
	if err != nil {
		return nil, fmt.Errorf("reading user and key: %w", err)
	}
	return &row, nil
}

// newKey is a request with a new key: the user's read, the first
// transaction, the charge, the second transaction.
func (l *limit) newKey(ctx context.Context, email, key string) error {
	row, err := l.readUserWithKey(ctx, email, key)
	if err != nil {
		return err
	}
	_, err = l.createRide(ctx, row, key)
	return err
}

// createRide is a new key after the user's read, row: the first
// transaction, the charge, the second transaction. It returns the body
// the key stores.
func (l *limit) createRide(ctx context.Context, row *keyRow, key string) ([]byte, error) {
	if row.keyID != nil {
		return nil, fmt.Errorf("key %s exists", key)
	}
	lockToken := uuid.New()
	var (
		keyID, rideID int64
		stripeKey     uuid.UUID
	)
	err := l.retry(ctx, func() error {
		return l.pool.QueryRow(ctx, sqlCreateRide, key, lockToken, rideRequestParams, row.userID,
			37.7749, -122.4194, 37.8044, -122.2712).Scan(&keyID, &stripeKey, &rideID)
	})
	if err != nil {
		return nil, fmt.Errorf("creating ride: %w", err)
	}
	chargeID, err := l.stripe.charge(ctx, row.customerID, stripeKey.String(), keyID, rideID)
	if err != nil {
		return nil, err
	}
	return l.finish(ctx, sqlFinishRide, keyID, lockToken, chargeID, rideID)
}

// cancel is a cancel with a new key of the user's charged ride rideID: the
// user's read, the claim, the refund, the second transaction.
func (l *limit) cancel(ctx context.Context, email, key string, rideID int64) error {
	row, err := l.readUserWithKey(ctx, email, key)
	if err != nil {
		return err
	}
	if row.keyID != nil {
		return fmt.Errorf("key %s exists", key)
	}
	lockToken := uuid.New()
	var (
		keyID, claimID int64
		stripeKey      uuid.UUID
		chargeID       string
	)
	err = l.retry(ctx, func() error {
		return l.pool.QueryRow(ctx, sqlClaimRide, key, lockToken, rideID, row.userID).Scan(&keyID, &stripeKey, &claimID, &chargeID)
	})
	if err != nil {
		return fmt.Errorf("claiming ride %d: %w", rideID, err)
	}
	refundID, err := l.stripe.refund(ctx, chargeID, stripeKey.String(), keyID, rideID)
	if err != nil {
		return err
	}
	_, err = l.finish(ctx, sqlFinishCancel, keyID, lockToken, refundID, claimID)
	return err
}

// finish runs a second transaction, sql, whose arguments are the key, its
// lock token, the Stripe object's id and the row it is recorded on, and
// returns the response body it stored.
func (l *limit) finish(ctx context.Context, sql string, keyID int64, lockToken uuid.UUID, stripeID string, rowID int64) ([]byte, error) {
	var body []byte
	err := l.retry(ctx, func() error {
		return l.pool.QueryRow(ctx, sql, keyID, lockToken, stripeID, rowID).Scan(&body)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("finishing key %d: %w", keyID, errLockLost)
	}
	if err != nil {
		return nil, fmt.Errorf("finishing key %d: %w", keyID, err)
	}
	return body, nil
}

// retry runs send until it succeeds, fails for another reason than a
// serialization failure or a deadlock, or limitMaxAttempts attempts failed.
func (l *limit) retry(ctx context.Context, send func() error) error {
	var err error
	for attempt := range limitMaxAttempts {
		err = send()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40001" && pgErr.Code != "40P01") {
			return err
		}
		ceiling := min(limitBackoffBase<<min(attempt, 16), limitBackoffMax)
		select {
		case <-time.After(rand.N(ceiling)):
		case <-ctx.Done():
			return err
		}
	}
	return err
}

// bareHandler is a bare net/http handler on the limit: it authenticates by
// email and reads the user and the key in sqlUserWithKey's one round trip;
// it answers a finished key with its stored status and bytes (the replays'
// limit) and runs a new key as newKey does, answering 201 with the body it
// stored (the new keys' bare handler, whose CPU is the floor of any
// handler on net/http, pgx and a net/http client of Stripe).
func (l *limit) bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		key := r.Header.Get("Idempotency-Key")
		row, err := l.readUserWithKey(r.Context(), r.Header.Get("Authorization"), key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		status, body := http.StatusCreated, []byte(nil)
		switch {
		case row.keyID == nil:
			if body, err = l.createRide(r.Context(), row, key); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		case row.recoveryPoint == nil || *row.recoveryPoint != "finished" || row.responseCode == nil:
			http.Error(w, "key not finished", http.StatusConflict)
			return
		default:
			status, body = int(*row.responseCode), row.responseBody
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}
