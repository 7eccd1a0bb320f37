// Package jobs holds the background processes of rocket-rides, each a
// long-running service shaped like River's maintenance services: an XConfig
// with XDefault constants, NewX(dependencies, *XConfig) (*X, error), Start,
// which returns once the service's loop runs, Stop, which signals the loop
// and waits for it (both from the shared service lifecycle), and a runOnce
// that does one pass and that tests call directly.
//
//   - Completer pushes abandoned requests of every registered workflow to
//     completion through the same phases the API runs (Engine.Resume).
//   - Enqueuer moves transactionally staged jobs into River, where
//     ReceiptWorker sends ride receipts.
//   - Reaper deletes idempotency keys once no retry can come any more.
//   - Simulator sends random traffic to the API, half of it failing on
//     purpose, so the others have work to do.
package jobs
