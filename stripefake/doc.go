// Package stripefake is a fake Stripe API server for tests and local runs.
//
// It speaks Stripe's wire format closely enough for stripe-go (v76, API
// version 2023-10-16) to be exercised end to end against it:
// form-encoded requests with nested keys such as metadata[ride_id],
// JSON objects shaped like Stripe's, Stripe's error envelope, Bearer (or
// Basic) API keys, the Request-Id response header and Stripe's
// idempotency rules for the Idempotency-Key request header.
//
// It covers only what the ride-hailing demo uses:
//
//	POST /v1/customers        create a customer, optionally with a test card token
//	GET  /v1/customers/{id}   retrieve a customer
//	POST /v1/charges          charge a customer
//	GET  /v1/charges/{id}     retrieve a charge
//	GET  /v1/charges          list charges, newest first, with Stripe's pagination
//	POST /v1/refunds          refund a charge, in full or in part
//	GET  /v1/refunds/{id}     retrieve a refund
//	GET  /v1/refunds          list refunds, newest first, with Stripe's pagination
//
// Customers created with source=tok_visa (or with no source) can be
// charged; customers created with source=tok_chargeCustomerFail are
// created, but every charge on them is declined, as on Stripe.
//
// A charge can be refunded until its whole amount is; then a further
// refund is refused with charge_already_refunded, as on Stripe. A
// declined charge cannot be refunded (charge_not_refundable). The charge
// object reports amount_refunded and refunded, and carries its refunds
// only when asked to expand them (expand[]=refunds), as Stripe does since
// API version 2022-11-15.
//
// Charge and refund requests can be slowed down and made to fail (see
// [Config]), to test how callers cope with a slow or flaky Stripe, and in
// particular that they retry with the same Idempotency-Key.
//
// What it is not: it is not Stripe, nor a general Stripe emulator (for
// that, see stripe-mock, which is stateless). It has a single account,
// accepts any non-empty API key, keeps all state in memory for the life
// of the process, never expires idempotency keys, does not enforce
// per-currency minimum amounts, and rejects every parameter it does not
// understand rather than silently ignoring it. Unlike Stripe, it lets a
// customer without a card be charged.
package stripefake
