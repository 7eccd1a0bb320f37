package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The cancelling clients' behaviour.
const (
	// abandonCancelRate is the fraction of the cancels whose client gives
	// up after a first attempt that was not definitive, leaving the cancel
	// to the completer.
	abandonCancelRate = 0.5

	// cancelRate is the fraction of the rides created (201) whose client
	// then cancels them.
	cancelRate = 0.3
)

// expectedCancelAnswers are the definitive answers a cancel may end with;
// any other is a failure. Each ride is cancelled by one client under one
// key, so not even a 409 ride-already-cancelled is expected.
var expectedCancelAnswers = map[string]bool{
	"200":                  true,
	"503 payment-rejected": true,
}

// cancelStats is what the cancelling clients saw.
type cancelStats struct {
	// abandoned counts cancels whose client gave up on purpose after a
	// first attempt that was not definitive.
	abandoned int

	// answers counts the definitive answer of each cancel by answer.
	answers map[string]int

	// attempts counts every attempt by answer.
	attempts map[string]int

	// cancelled maps the ride of each 200 answer to the refund it named.
	cancelled map[int64]string

	// gaveUp counts cancels that got no definitive answer in maxAttempts.
	gaveUp int

	// interrupted counts cancels still retrying when the drain ended.
	interrupted int

	// sent counts cancels (each with its own key, however many attempts).
	sent int

	// sharedRides counts 200 answers naming a ride that another cancel's
	// answer named too.
	sharedRides int
}

func newCancelStats() cancelStats {
	return cancelStats{answers: make(map[string]int), attempts: make(map[string]int), cancelled: make(map[int64]string)}
}

// cancelDefinitive reports whether a cancel's answer ends it: a success, a
// client error (a 409 only if the ride is already cancelled: a 409
// request-in-progress or ride-pending is retried), or a stored refusal
// from Stripe. Anything else, no answer included, is retried with the same
// key.
func (a *answer) cancelDefinitive() bool {
	if a.status == http.StatusConflict {
		return a.problemKind == "ride-already-cancelled"
	}
	return a.definitive()
}

// cancel cancels ride rideID of r's user under a fresh key, retried with
// that key until a definitive answer, its client gives up, or ctx ends.
func (l *load) cancel(ctx context.Context, r *rideRequest, rideID int64) {
	key := uuid.NewString()
	l.update(func(s *loadStats) { s.cancels.sent++ })
	for attempt := 1; ; attempt++ {
		a := l.sendCancel(ctx, r.email, key, rideID)
		if ctx.Err() != nil {
			l.update(func(s *loadStats) { s.cancels.interrupted++ })
			return
		}
		l.update(func(s *loadStats) { s.cancels.attempts[a.label()]++ })
		switch {
		case a.cancelDefinitive():
			l.update(func(s *loadStats) {
				s.cancels.answers[a.label()]++
				if a.status != http.StatusOK {
					return
				}
				if _, ok := s.cancels.cancelled[a.rideID]; ok || a.rideID != rideID {
					s.cancels.sharedRides++
				}
				s.cancels.cancelled[a.rideID] = a.refundID
			})
			return
		case attempt == 1 && r.abandonCancel:
			l.update(func(s *loadStats) { s.cancels.abandoned++ })
			return
		case attempt == maxAttempts:
			l.logger.WarnContext(ctx, "chaos: cancelling client gave up", slog.String("idempotency_key", key), slog.String("last_answer", a.label()))
			l.update(func(s *loadStats) { s.cancels.gaveUp++ })
			return
		}
		if !sleep(ctx, backoff(attempt)) {
			l.update(func(s *loadStats) { s.cancels.interrupted++ })
			return
		}
	}
}

// sendCancel makes one attempt at cancelling rideID.
func (l *load) sendCancel(ctx context.Context, email, key string, rideID int64) *answer {
	got, err := l.client.CancelRide(ctx, email, key, rideID, "")
	if err != nil {
		return &answer{} // no answer, or the API died while answering
	}
	a := &answer{problemKind: got.ProblemType, status: got.Status}
	if got.Ride != nil {
		a.rideID = got.Ride.ID
	}
	if got.StripeRefundID != nil {
		a.refundID = *got.StripeRefundID
	}
	return a
}

// unmatchedCancels counts the 200 cancel answers whose ride is not
// cancelled with the refund the answer named.
func unmatchedCancels(ctx context.Context, pool *pgxpool.Pool, cancelled map[int64]string) (int, error) {
	rideIDs := make([]int64, 0, len(cancelled))
	refundIDs := make([]string, 0, len(cancelled))
	for rideID, refundID := range cancelled {
		rideIDs = append(rideIDs, rideID)
		refundIDs = append(refundIDs, refundID)
	}
	var unmatched int
	err := pool.QueryRow(ctx, `
		SELECT count(*)
		FROM unnest($1::bigint[], $2::text[]) AS answer (ride_id, refund_id)
		LEFT JOIN ride_cancellations c
			ON c.ride_id = answer.ride_id AND c.stripe_refund_id = answer.refund_id AND c.cancelled_at IS NOT NULL
		WHERE c.id IS NULL`, rideIDs, refundIDs).Scan(&unmatched)
	if err != nil {
		return 0, fmt.Errorf("checking the cancellations of 200 answers: %w", err)
	}
	return unmatched, nil
}
