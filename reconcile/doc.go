// Package reconcile compares the database with Stripe and reports every
// difference: the operator's check that every ride was charged exactly
// once, every cancelled ride refunded exactly once, and that nothing was
// charged or refunded without a ride or a cancellation.
//
// A run reads in passes, each in batches, so that it works on any size: the
// idempotency keys, the rides and the ride cancellations (keyset pagination
// by id), then every charge and every refund on Stripe (Stripe's own
// pagination, newest first). The database is read before Stripe on purpose:
// a charge is always created on Stripe before a ride records it, and a
// refund before a cancellation records it, so what the database pass saw
// recorded is on Stripe by the time Stripe is listed. A request still
// running shows up as a pending ride, claim, charge or refund, counted but
// not a problem.
//
// # Exact on a live system
//
// The other way round, Stripe may hold what the database pass could not see:
// a ride created (or a ride claimed for cancellation) after its page was
// read, and charged (or refunded) before the listing reached it. So what
// looks like a difference after the Stripe pass (a charge without a ride, a
// refund without a cancellation) is checked again against the database
// before it is reported: a charge whose ride now records it, or waits for
// its unfinished key, and a refund whose ride is now claimed, or cancelled
// with that refund, were in flight, and are counted as pending
// (Report.Rechecked). Anything else is a real difference, however the
// timing fell: a charge with no ride at all still fails the run. A run
// during traffic therefore reports no false difference, and needs no quiet
// moment.
//
// It keeps in memory one small entry per charged ride, per ride without a
// charge whose key is unfinished or gone, per cancellation, per Stripe
// idempotency key with a succeeded charge and per refunded charge.
package reconcile
