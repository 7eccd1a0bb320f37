// Package reconcile compares the database with Stripe's charges and reports
// every difference: the operator's check that every ride was charged exactly
// once, and that nothing was charged without a ride.
//
// A run reads in three passes, each in batches, so that it works on any
// size: the idempotency keys and the rides (keyset pagination by id), then
// every charge on Stripe (Stripe's own pagination, newest first). The
// database is read before Stripe on purpose: a charge is always created on
// Stripe before a ride records it, so a ride that the database pass saw
// charged has its charge on Stripe by the time Stripe is listed. A request
// still running shows up as a pending ride or a pending charge, counted but
// not a problem.
//
// It keeps in memory one small entry per charged ride, per ride without a
// charge whose key is unfinished or gone, and per Stripe idempotency key
// with a succeeded charge.
package reconcile
