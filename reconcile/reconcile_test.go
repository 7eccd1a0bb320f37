package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/db/dbtest"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/rides/ridestest"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

func TestReconciler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		declining *db.User // every charge on its card is declined
		fake      *stripefake.Server
		stripe    *stripeclient.Client
		tx        pgx.Tx
		user      *db.User
	}

	setup := func(t *testing.T) (*Reconciler, *testBundle) {
		t.Helper()
		tx := dbtest.Tx(ctx, t)
		fake, baseURL := stripefaketest.NewServer(t, stripefake.Config{Logger: slog.New(slog.DiscardHandler)})
		stripe := ridestest.NewStripe(t, baseURL)
		bundle := &testBundle{
			declining: newUser(ctx, t, tx, stripe, "tok_chargeCustomerFail"),
			fake:      fake,
			stripe:    stripe,
			tx:        tx,
			user:      newUser(ctx, t, tx, stripe, "tok_visa"),
		}
		return newReconciler(t, tx, stripe, &ReconcilerConfig{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}), bundle
	}

	// key inserts a key of user's, finished with status, or unfinished at
	// recoveryPoint if status is 0.
	key := func(t *testing.T, bundle *testBundle, user *db.User, recoveryPoint string, status int32) *db.IdempotencyKey {
		t.Helper()
		opts := &testfactory.IdempotencyKeyOpts{RecoveryPoint: &recoveryPoint}
		if status != 0 {
			opts.RecoveryPoint = testfactory.Ptr(idempotency.RecoveryPointFinished)
			opts.ResponseCode = &status
			opts.ResponseBody = json.RawMessage(`{}`)
		}
		return testfactory.IdempotencyKey(ctx, t, bundle.tx, user, opts)
	}

	// charge charges user as rides does for ride, under stripeKey, with
	// the changes change makes to the parameters, and returns the charge's
	// id, declined or not.
	charge := func(t *testing.T, bundle *testBundle, user *db.User, stripeKey string, ride *db.Ride, change func(*stripeclient.ChargeParams)) string {
		t.Helper()
		params := &stripeclient.ChargeParams{
			Amount:         rides.ChargeAmount,
			Currency:       rides.ChargeCurrency,
			Customer:       user.StripeCustomerID,
			Description:    "Charge for ride " + strconv.FormatInt(ride.ID, 10),
			IdempotencyKey: stripeKey,
			Metadata: map[string]string{
				rides.MetadataIdempotencyKey: stripeKey,
				rides.MetadataRideID:         strconv.FormatInt(ride.ID, 10),
			},
		}
		if change != nil {
			change(params)
		}
		created, err := bundle.stripe.ChargeCreate(ctx, params)
		var stripeErr *stripe.Error
		if errors.As(err, &stripeErr) && stripeErr.Type == stripe.ErrorTypeCard {
			return stripeErr.ChargeID
		}
		require.NoError(t, err)
		return created.ID
	}

	recordCharge := func(t *testing.T, bundle *testBundle, ride *db.Ride, chargeID string) {
		t.Helper()
		_, err := db.New().RideSetStripeChargeID(ctx, bundle.tx, &db.RideSetStripeChargeIDParams{ID: ride.ID, StripeChargeID: &chargeID})
		require.NoError(t, err)
	}

	// chargedRide makes what a successful request leaves: a key finished
	// with 201, its ride, and the ride's charge, changed by change.
	chargedRide := func(t *testing.T, bundle *testBundle, change func(*stripeclient.ChargeParams)) (*db.IdempotencyKey, *db.Ride, string) {
		t.Helper()
		key := key(t, bundle, bundle.user, "", http.StatusCreated)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
		chargeID := charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(key), ride, change)
		recordCharge(t, bundle, ride, chargeID)
		return key, ride, chargeID
	}

	// refund refunds chargeID as the cancel workflow does for ride, under
	// a fresh Stripe idempotency key, with the changes change makes to the
	// parameters, and returns the refund's id.
	refund := func(t *testing.T, bundle *testBundle, chargeID string, ride *db.Ride, change func(*stripeclient.RefundParams)) string {
		t.Helper()
		stripeKey := "rocket-rides-" + uuid.NewString()
		params := &stripeclient.RefundParams{
			Charge:         chargeID,
			IdempotencyKey: stripeKey,
			Metadata: map[string]string{
				rides.MetadataIdempotencyKey: stripeKey,
				rides.MetadataRideID:         strconv.FormatInt(ride.ID, 10),
			},
		}
		if change != nil {
			change(params)
		}
		created, err := bundle.stripe.RefundCreate(ctx, params)
		require.NoError(t, err)
		return created.ID
	}

	// claim claims ride for cancellation under a cancel key of its own,
	// finished with 200 if refundID is set, in which case the cancellation
	// records that refund (the ride is cancelled). The reconciler reads no
	// cancel key's recovery point: an unfinished one is left at started.
	claim := func(t *testing.T, bundle *testBundle, ride *db.Ride, refundID string) {
		t.Helper()
		opts := &testfactory.IdempotencyKeyOpts{Workflow: testfactory.Ptr(rides.WorkflowCancel)}
		if refundID != "" {
			opts.RecoveryPoint = testfactory.Ptr(idempotency.RecoveryPointFinished)
			opts.ResponseBody = json.RawMessage(`{}`)
			opts.ResponseCode = testfactory.Ptr(int32(http.StatusOK))
		}
		cancelKey := testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, opts)
		claimed, err := db.New().RideCancellationInsert(ctx, bundle.tx, &db.RideCancellationInsertParams{
			IdempotencyKeyID: &cancelKey.ID,
			RideID:           ride.ID,
			UserID:           ride.UserID,
		})
		require.NoError(t, err)
		if refundID != "" {
			err = db.New().RideCancellationSetRefund(ctx, bundle.tx, &db.RideCancellationSetRefundParams{ID: claimed.ID, StripeRefundID: &refundID, CancelledAt: new(time.Now())})
			require.NoError(t, err)
		}
	}

	// cancelledRide makes what a successful cancel leaves: a charged ride,
	// its refund (changed by change), its cancellation recording the refund.
	cancelledRide := func(t *testing.T, bundle *testBundle, change func(*stripeclient.RefundParams)) (*db.Ride, string, string) {
		t.Helper()
		_, ride, chargeID := chargedRide(t, bundle, nil)
		refundID := refund(t, bundle, chargeID, ride, change)
		claim(t, bundle, ride, refundID)
		return ride, chargeID, refundID
	}

	run := func(t *testing.T, reconciler *Reconciler) *Report {
		t.Helper()
		report, err := reconciler.Run(ctx)
		require.NoError(t, err)
		return report
	}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		reconciler := newReconciler(t, nil, nil, nil)
		require.Equal(t, ReconcilerBatchSizeDefault, reconciler.config.BatchSize)
		require.NotNil(t, reconciler.logger)
	})

	t.Run("RejectsNonsense", func(t *testing.T) {
		t.Parallel()
		_, err := NewReconciler(nil, nil, &ReconcilerConfig{BatchSize: -1})
		require.ErrorContains(t, err, "reconciler: BatchSize must be positive, got -1")
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		reconciler, _ := setup(t)
		report := run(t, reconciler)
		require.True(t, report.OK())
		require.Equal(t, &Report{KeysByStatus: map[int32]int{}}, report)
	})

	t.Run("CleanStateIsOK", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)

		// Two rides charged.
		chargedRide(t, bundle, nil)
		chargedRide(t, bundle, nil)

		// Declined: a 402 key, its ride, a failed charge.
		declinedKey := key(t, bundle, bundle.declining, "", http.StatusPaymentRequired)
		declinedRide := testfactory.Ride(ctx, t, bundle.tx, bundle.declining, &testfactory.RideOpts{IdempotencyKeyID: &declinedKey.ID})
		charge(t, bundle, bundle.declining, rides.StripeIdempotencyKey(declinedKey), declinedRide, nil)

		// Rejected by Stripe: a 503 key and its ride, no charge.
		rejectedKey := key(t, bundle, bundle.user, "", http.StatusServiceUnavailable)
		testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &rejectedKey.ID})

		// In progress: a key at ride_created and its ride.
		unfinishedKey := key(t, bundle, bundle.user, rides.RecoveryPointRideCreated, 0)
		testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &unfinishedKey.ID})

		// In progress, charged on Stripe, not yet recorded (Stripe's answer
		// was lost): the retry will get the same charge.
		pendingKey := key(t, bundle, bundle.user, rides.RecoveryPointRideCreated, 0)
		pendingRide := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &pendingKey.ID})
		charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(pendingKey), pendingRide, nil)

		// Just started: a key without a ride yet.
		key(t, bundle, bundle.user, idempotency.RecoveryPointStarted, 0)

		// Reaped after it finished: a charged ride without a key.
		reapedRide := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)
		recordCharge(t, bundle, reapedRide, charge(t, bundle, bundle.user, "rocket-rides-"+uuid.NewString(), reapedRide, nil))

		// Reaped after it was declined: a ride without a key or a charge,
		// whose declined charge Stripe still has.
		reapedDeclinedRide := testfactory.Ride(ctx, t, bundle.tx, bundle.declining, nil)
		charge(t, bundle, bundle.declining, "rocket-rides-"+uuid.NewString(), reapedDeclinedRide, nil)

		report := run(t, reconciler)
		require.True(t, report.OK())
		require.Equal(t, &Report{
			Keys:                        7,
			KeysFinished:                4,
			KeysByStatus:                map[int32]int{201: 2, 402: 1, 503: 1},
			KeysUnfinished:              3,
			Rides:                       8,
			RidesCharged:                3,
			RidesUnchargedKeyUnfinished: 2,
			RidesUnchargedKeyFailed:     3,
			Charges:                     6,
			ChargesFailed:               2,
			ChargesPending:              1,
			ChargesSucceeded:            4,
		}, report)
		require.Equal(t, 5, report.RidesUncharged())
	})

	// What the real workflow leaves behind reconciles: rides and reconcile
	// agree on the charges' metadata.
	t.Run("RealRequestsAreOK", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		exec := db.Savepoint{Tx: bundle.tx}
		creator := ridestest.NewCreator(t, exec, nil, bundle.stripe)
		create := func(user *db.User, raiseError bool) error {
			_, err := creator.Create(ctx, &rides.Request{
				IdempotencyKey: testfactory.KeyValue(),
				OriginIP:       netip.MustParseAddr("127.0.0.1"),
				RaiseError:     raiseError,
				User:           user,
			})
			return err
		}
		require.NoError(t, create(bundle.user, false))
		require.NoError(t, create(bundle.declining, false))
		require.ErrorIs(t, create(bundle.user, true), rides.ErrSimulatedFailure)

		report := run(t, reconciler)
		require.True(t, report.OK())
		require.Equal(t, &Report{
			Keys:                        3,
			KeysFinished:                2,
			KeysByStatus:                map[int32]int{201: 1, 402: 1},
			KeysUnfinished:              1,
			Rides:                       3,
			RidesCharged:                1,
			RidesUnchargedKeyUnfinished: 1,
			RidesUnchargedKeyFailed:     1,
			Charges:                     2,
			ChargesFailed:               1,
			ChargesSucceeded:            1,
		}, report)
	})

	// What the real cancel workflow leaves behind reconciles: the refund's
	// metadata and amount are what reconcile checks.
	t.Run("RealCancelsAreOK", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		exec := db.Savepoint{Tx: bundle.tx}
		creator := ridestest.NewCreator(t, exec, nil, bundle.stripe)
		var rideIDs []int64
		for range 2 {
			response, err := creator.Create(ctx, &rides.Request{
				IdempotencyKey: testfactory.KeyValue(),
				OriginIP:       netip.MustParseAddr("127.0.0.1"),
				User:           bundle.user,
			})
			require.NoError(t, err)
			var created rides.CreatedBody
			require.NoError(t, json.Unmarshal(response.Body, &created))
			rideIDs = append(rideIDs, created.Ride.ID)
		}
		response, err := creator.Cancel(ctx, &rides.CancelRequest{
			IdempotencyKey: testfactory.KeyValue(),
			OriginIP:       netip.MustParseAddr("127.0.0.1"),
			Params:         rides.CancelParams{Reason: "plans changed", RideID: rideIDs[0]},
			User:           bundle.user,
		})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, response.Status)

		report := run(t, reconciler)
		require.True(t, report.OK(), "%+v", problemsOf(report))
		require.Equal(t, 1, report.RidesCancelled)
		require.Equal(t, 1, report.Refunds)
		require.Equal(t, map[int32]int{200: 1, 201: 2}, report.KeysByStatus)
	})

	t.Run("ChargeWithoutRide", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		chargedRide(t, bundle, nil)
		orphan := charge(t, bundle, bundle.user, "rocket-rides-"+uuid.NewString(), &db.Ride{ID: 1 << 40}, nil)

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"charges without a ride": {Count: 1, Examples: []string{orphan}},
		}, problemsOf(report))
	})

	t.Run("DeclinedChargeWithoutRideIsNoProblem", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		charge(t, bundle, bundle.declining, "rocket-rides-"+uuid.NewString(), &db.Ride{ID: 1 << 40}, nil)

		report := run(t, reconciler)
		require.True(t, report.OK())
		require.Equal(t, 1, report.ChargesFailed)
	})

	t.Run("DoubleCharge", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		key, ride, _ := chargedRide(t, bundle, nil)
		// The same request's metadata, charged again under another
		// Stripe idempotency key, so that Stripe does not replay it.
		second := charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(key), ride, func(params *stripeclient.ChargeParams) {
			params.IdempotencyKey = uuid.NewString()
		})

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"double charges (idempotency keys charged twice)": {Count: 1, Examples: []string{rides.StripeIdempotencyKey(key) + ": 2 charges"}},
			"charges without a ride":                          {Count: 1, Examples: []string{second}},
		}, problemsOf(report))
	})

	t.Run("RideChargeMissingOnStripe", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		key := key(t, bundle, bundle.user, "", http.StatusCreated)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID, StripeChargeID: testfactory.Ptr("ch_missing")})

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"rides whose charge is missing on Stripe": {Count: 1, Examples: []string{fmt.Sprintf("ride %d: ch_missing", ride.ID)}},
		}, problemsOf(report))
	})

	t.Run("RideChargeDiffers", func(t *testing.T) {
		t.Parallel()

		// Each change gives a difference; customerWant is the ride's
		// user's customer, customerGot the one charged.
		tests := []struct {
			name       string
			change     func(t *testing.T, bundle *testBundle, params *stripeclient.ChargeParams)
			difference func(customerWant, customerGot string) string
		}{
			{
				"Amount",
				func(_ *testing.T, _ *testBundle, params *stripeclient.ChargeParams) { params.Amount = 1999 },
				func(string, string) string { return "amount 1999, want 2000" },
			},
			{
				"Currency",
				func(_ *testing.T, _ *testBundle, params *stripeclient.ChargeParams) { params.Currency = "eur" },
				func(string, string) string { return "currency eur, want usd" },
			},
			{
				"Customer",
				func(t *testing.T, bundle *testBundle, params *stripeclient.ChargeParams) {
					params.Customer = newUser(ctx, t, bundle.tx, bundle.stripe, "tok_visa").StripeCustomerID
				},
				func(want, got string) string { return "customer " + got + ", want " + want },
			},
			{
				"Declined",
				func(_ *testing.T, bundle *testBundle, params *stripeclient.ChargeParams) {
					params.Customer = bundle.declining.StripeCustomerID
				},
				func(want, got string) string { return "customer " + got + ", want " + want + ", status failed" },
			},
			{
				"Ride",
				func(_ *testing.T, _ *testBundle, params *stripeclient.ChargeParams) {
					params.Metadata[rides.MetadataRideID] = "0"
				},
				func(string, string) string { return `metadata ride_id "0"` },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				reconciler, bundle := setup(t)
				var customer string
				_, ride, _ := chargedRide(t, bundle, func(params *stripeclient.ChargeParams) {
					tt.change(t, bundle, params)
					customer = params.Customer
				})

				report := run(t, reconciler)
				require.False(t, report.OK())
				difference := tt.difference(bundle.user.StripeCustomerID, customer)
				require.Equal(t, map[string]Problem{
					"rides whose charge differs on Stripe": {Count: 1, Examples: []string{fmt.Sprintf("ride %d: %s", ride.ID, difference)}},
				}, problemsOf(report))
			})
		}
	})

	t.Run("RideChargedWithKeyUnfinished", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		key := key(t, bundle, bundle.user, rides.RecoveryPointChargeCreated, 0)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})
		recordCharge(t, bundle, ride, charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(key), ride, nil))

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"rides charged with their key unfinished": {Count: 1, Examples: []string{strconv.FormatInt(ride.ID, 10)}},
		}, problemsOf(report))
	})

	t.Run("KeyFinishedWithoutRide", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		key := key(t, bundle, bundle.user, "", http.StatusCreated)

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"keys finished 201 without a charged ride": {Count: 1, Examples: []string{strconv.FormatInt(key.ID, 10)}},
		}, problemsOf(report))
	})

	t.Run("KeyFinishedWithUnchargedRide", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		key := key(t, bundle, bundle.user, "", http.StatusCreated)
		testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &key.ID})

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"keys finished 201 without a charged ride": {Count: 1, Examples: []string{strconv.FormatInt(key.ID, 10)}},
		}, problemsOf(report))
	})

	t.Run("RideWithoutChargeOrKey", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"rides without a charge or a key": {Count: 1, Examples: []string{strconv.FormatInt(ride.ID, 10)}},
		}, problemsOf(report))
	})

	t.Run("CancelledRidesAreOK", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)

		// Two rides cancelled, refunded in full.
		cancelledRide(t, bundle, nil)
		cancelledRide(t, bundle, nil)

		// A claim whose refund Stripe made, not yet recorded (Stripe's
		// answer was lost): the retry will get the same refund.
		_, pendingRide, pendingCharge := chargedRide(t, bundle, nil)
		claim(t, bundle, pendingRide, "")
		refund(t, bundle, pendingCharge, pendingRide, nil)

		// A claim whose refund has not been asked for yet.
		_, claimedRide, _ := chargedRide(t, bundle, nil)
		claim(t, bundle, claimedRide, "")

		// A charged ride nobody cancels.
		chargedRide(t, bundle, nil)

		report := run(t, reconciler)
		require.True(t, report.OK(), "%+v", problemsOf(report))
		require.Equal(t, &Report{
			Keys:                     9,
			KeysFinished:             7,
			KeysByStatus:             map[int32]int{200: 2, 201: 5},
			KeysUnfinished:           2,
			Rides:                    5,
			RidesCharged:             5,
			Charges:                  5,
			ChargesSucceeded:         5,
			RidesCancelled:           2,
			RidesCancellationClaimed: 2,
			Refunds:                  3,
			RefundsPending:           1,
		}, report)
	})

	t.Run("RefundWithoutCancellation", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		cancelledRide(t, bundle, nil)
		_, ride, chargeID := chargedRide(t, bundle, nil)
		orphan := refund(t, bundle, chargeID, ride, nil)

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"refunds without a cancelled ride": {Count: 1, Examples: []string{orphan}},
		}, problemsOf(report))
	})

	// A refund of another ride's charge, claimed: the claim does not
	// explain it.
	t.Run("RefundOfClaimedRideForAnotherCharge", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		_, claimedRide, _ := chargedRide(t, bundle, nil)
		claim(t, bundle, claimedRide, "")
		_, _, otherCharge := chargedRide(t, bundle, nil)
		wrong := refund(t, bundle, otherCharge, claimedRide, nil)

		report := run(t, reconciler)
		require.Equal(t, map[string]Problem{
			"refunds without a cancelled ride": {Count: 1, Examples: []string{wrong}},
		}, problemsOf(report))
	})

	// Stripe refuses a second full refund, so the second refund of a
	// charge is partial, as are both here.
	t.Run("ChargeRefundedTwice", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		half := func(params *stripeclient.RefundParams) { params.Amount = rides.ChargeAmount / 2 }
		ride, chargeID, _ := cancelledRide(t, bundle, half)
		second := refund(t, bundle, chargeID, ride, half)

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"charges refunded twice":                         {Count: 1, Examples: []string{chargeID + ": 2 refunds"}},
			"refunds without a cancelled ride":               {Count: 1, Examples: []string{second}},
			"cancelled rides whose refund differs on Stripe": {Count: 1, Examples: []string{fmt.Sprintf("ride %d: amount 1000, want 2000", ride.ID)}},
		}, problemsOf(report))
	})

	// A cancel key that answered 200 whose ride is only claimed, and one
	// with no cancellation at all.
	t.Run("CancelKeyFinishedWithoutCancelledRide", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		_, ride, _ := chargedRide(t, bundle, nil)
		cancelKey := func() *db.IdempotencyKey {
			return testfactory.IdempotencyKey(ctx, t, bundle.tx, bundle.user, &testfactory.IdempotencyKeyOpts{
				RecoveryPoint: testfactory.Ptr(idempotency.RecoveryPointFinished),
				ResponseBody:  json.RawMessage(`{}`),
				ResponseCode:  testfactory.Ptr(int32(http.StatusOK)),
				Workflow:      testfactory.Ptr(rides.WorkflowCancel),
			})
		}
		claimingKey := cancelKey()
		_, err := db.New().RideCancellationInsert(ctx, bundle.tx, &db.RideCancellationInsertParams{
			IdempotencyKeyID: &claimingKey.ID, RideID: ride.ID, UserID: ride.UserID,
		})
		require.NoError(t, err)
		lonelyKey := cancelKey()

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"cancel keys finished 200 without a cancelled ride": {Count: 2, Examples: []string{
				strconv.FormatInt(claimingKey.ID, 10), strconv.FormatInt(lonelyKey.ID, 10),
			}},
		}, problemsOf(report))
	})

	t.Run("CancelledRideRefundMissingOnStripe", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		_, ride, _ := chargedRide(t, bundle, nil)
		claim(t, bundle, ride, "re_missing")

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"cancelled rides whose refund is missing on Stripe": {Count: 1, Examples: []string{fmt.Sprintf("ride %d: re_missing", ride.ID)}},
		}, problemsOf(report))
	})

	t.Run("CancelledRideRefundDiffers", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)

		// Refunded in part.
		partRide, _, _ := cancelledRide(t, bundle, func(params *stripeclient.RefundParams) { params.Amount = 1999 })

		// Refunded under another ride's metadata.
		metadataRide, _, _ := cancelledRide(t, bundle, func(params *stripeclient.RefundParams) { params.Metadata[rides.MetadataRideID] = "0" })

		// The refund of another ride's charge recorded as this ride's.
		_, wrongRide, wrongCharge := chargedRide(t, bundle, nil)
		_, otherRide, otherCharge := chargedRide(t, bundle, nil)
		claim(t, bundle, wrongRide, refund(t, bundle, otherCharge, wrongRide, nil))

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"cancelled rides whose refund differs on Stripe": {Count: 3, Examples: []string{
				fmt.Sprintf("ride %d: charge %s, want %s", wrongRide.ID, otherCharge, wrongCharge),
				fmt.Sprintf("ride %d: metadata ride_id \"0\"", metadataRide.ID),
				fmt.Sprintf("ride %d: amount 1999, want 2000", partRide.ID),
			}},
		}, problemsOf(report))
		require.NotZero(t, otherRide.ID)
	})

	// Issue 13 goal 7: what a live system does between the database pass
	// and the Stripe pass is pending, not a problem; a real difference is
	// still one.
	t.Run("InFlightBetweenPassesIsPending", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		_, toClaim, toClaimCharge := chargedRide(t, bundle, nil)
		_, toCancel, toCancelCharge := chargedRide(t, bundle, nil)
		reconciler.config.Hooks.AfterDatabasePass = func(context.Context) error {
			// A ride created, charged and recorded.
			chargedRide(t, bundle, nil)

			// A ride created and charged, its key not finished yet.
			pendingKey := key(t, bundle, bundle.user, rides.RecoveryPointRideCreated, 0)
			pendingRide := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &pendingKey.ID})
			charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(pendingKey), pendingRide, nil)

			// A ride claimed and refunded, the refund not recorded yet.
			claim(t, bundle, toClaim, "")
			refund(t, bundle, toClaimCharge, toClaim, nil)

			// A ride claimed, refunded and cancelled.
			claim(t, bundle, toCancel, refund(t, bundle, toCancelCharge, toCancel, nil))
			return nil
		}

		report := run(t, reconciler)
		require.True(t, report.OK(), "%+v", problemsOf(report))
		require.Equal(t, 4, report.Rechecked)
		require.Equal(t, 2, report.ChargesPending)
		require.Equal(t, 2, report.RefundsPending)
		require.Equal(t, 2, report.Rides, "as the database pass saw them")
	})

	t.Run("RealDifferencesBetweenPassesAreProblems", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		_, ride, chargeID := chargedRide(t, bundle, nil)
		var orphanCharge, orphanRefund, declinedButCharged string
		reconciler.config.Hooks.AfterDatabasePass = func(context.Context) error {
			// A charge with no ride at all.
			orphanCharge = charge(t, bundle, bundle.user, "rocket-rides-"+uuid.NewString(), &db.Ride{ID: 1 << 40}, nil)

			// A refund of a ride nobody claimed.
			orphanRefund = refund(t, bundle, chargeID, ride, nil)

			// A charge of a ride whose key finished without a charge.
			failedKey := key(t, bundle, bundle.user, "", http.StatusServiceUnavailable)
			failedRide := testfactory.Ride(ctx, t, bundle.tx, bundle.user, &testfactory.RideOpts{IdempotencyKeyID: &failedKey.ID})
			declinedButCharged = charge(t, bundle, bundle.user, rides.StripeIdempotencyKey(failedKey), failedRide, nil)
			return nil
		}

		report := run(t, reconciler)
		require.False(t, report.OK())
		require.Equal(t, map[string]Problem{
			"charges without a ride":           {Count: 2, Examples: []string{declinedButCharged, orphanCharge}},
			"refunds without a cancelled ride": {Count: 1, Examples: []string{orphanRefund}},
		}, problemsOf(report))
		require.Zero(t, report.Rechecked)
	})

	t.Run("HookErrorEndsTheRun", func(t *testing.T) {
		t.Parallel()
		reconciler, _ := setup(t)
		errHook := errors.New("hook failed")
		reconciler.config.Hooks.AfterDatabasePass = func(context.Context) error { return errHook }
		_, err := reconciler.Run(ctx)
		require.ErrorIs(t, err, errHook)
	})

	t.Run("ExamplesAreBounded", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		var want []string
		for range MaxExamples + 2 {
			ride := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)
			want = append(want, strconv.FormatInt(ride.ID, 10))
		}

		report := run(t, reconciler)
		require.Equal(t, Problem{Count: MaxExamples + 2, Examples: want[:MaxExamples]}, report.RidesUnchargedWithoutKey)
	})

	// More rides and keys than a batch, more charges than a page of
	// Stripe's list: a problem on the last page of each is found.
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		reconciler, bundle := setup(t)
		reconciler.config.BatchSize = 7
		const numRides = 250

		// The oldest charge comes last in Stripe's list.
		orphan := charge(t, bundle, bundle.user, "rocket-rides-"+uuid.NewString(), &db.Ride{ID: 1 << 40}, nil)
		for range numRides {
			chargedRide(t, bundle, nil)
		}
		lastKey := key(t, bundle, bundle.user, "", http.StatusCreated)
		lastRide := testfactory.Ride(ctx, t, bundle.tx, bundle.user, nil)

		report := run(t, reconciler)
		require.Equal(t, numRides+1, report.Keys)
		require.Equal(t, numRides+1, report.Rides)
		require.Equal(t, numRides+1, report.Charges)
		require.Equal(t, map[string]Problem{
			"charges without a ride":                   {Count: 1, Examples: []string{orphan}},
			"keys finished 201 without a charged ride": {Count: 1, Examples: []string{strconv.FormatInt(lastKey.ID, 10)}},
			"rides without a charge or a key":          {Count: 1, Examples: []string{strconv.FormatInt(lastRide.ID, 10)}},
		}, problemsOf(report))
	})

	t.Run("StripeUnreachable", func(t *testing.T) {
		t.Parallel()
		_, bundle := setup(t)
		server := httptest.NewServer(http.NotFoundHandler())
		server.Close()
		stripe := ridestest.NewStripe(t, server.URL)

		_, err := newReconciler(t, bundle.tx, stripe, nil).Run(ctx)
		require.ErrorContains(t, err, "reconciling Stripe charges")
	})
}

func TestReportWrite(t *testing.T) {
	t.Parallel()

	// lines returns what Write prints, each line's spaces collapsed.
	lines := func(t *testing.T, report *Report) []string {
		t.Helper()
		var out bytes.Buffer
		require.NoError(t, report.Write(&out))
		var lines []string
		for line := range strings.Lines(out.String()) {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
		return lines
	}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		printed := lines(t, &Report{Keys: 3, KeysFinished: 3, KeysByStatus: map[int32]int{402: 1, 201: 2}})
		require.Len(t, printed, 30, "one line per figure")
		require.Contains(t, printed, "keys: 3")
		require.Contains(t, printed, "keys finished: 3 (201: 2, 402: 1)")
		require.Contains(t, printed, "double charges (idempotency keys charged twice): 0")
		require.Equal(t, "reconcile: OK: the database and Stripe agree", printed[len(printed)-1])
	})

	t.Run("Problems", func(t *testing.T) {
		t.Parallel()
		report := &Report{KeysByStatus: map[int32]int{}}
		report.ChargesWithoutRide.add("ch_1")
		report.ChargesWithoutRide.add("ch_2")
		for i := range MaxExamples + 1 {
			report.RidesUnchargedWithoutKey.add(strconv.Itoa(i))
		}
		printed := lines(t, report)
		require.Contains(t, printed, "keys finished: 0 (none)")
		require.Contains(t, printed, "charges without a ride: 2 FAIL (ch_1, ch_2)")
		require.Contains(t, printed, "rides without a charge or a key: 11 FAIL (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, …)")
		require.Equal(t, "reconcile: FAIL: the database and Stripe differ", printed[len(printed)-1])
	})
}

// problemsOf returns the report's problems that were found, by label.
func problemsOf(report *Report) map[string]Problem {
	found := make(map[string]Problem)
	for _, p := range report.problems() {
		if p.problem.Count > 0 {
			found[p.label] = *p.problem
		}
	}
	return found
}

// newUser inserts a user whose customer the fake knows, paying with source.
func newUser(ctx context.Context, t *testing.T, tx pgx.Tx, stripe *stripeclient.Client, source string) *db.User {
	t.Helper()
	customerID, err := stripe.CustomerCreate(ctx, "rider@example.com", source)
	require.NoError(t, err)
	return testfactory.User(ctx, t, tx, &testfactory.UserOpts{StripeCustomerID: &customerID})
}

// newReconciler returns a reconciler, failing the test if config is
// rejected.
func newReconciler(t *testing.T, exec db.DBTX, stripe *stripeclient.Client, config *ReconcilerConfig) *Reconciler {
	t.Helper()
	reconciler, err := NewReconciler(exec, stripe, config)
	require.NoError(t, err)
	return reconciler
}
