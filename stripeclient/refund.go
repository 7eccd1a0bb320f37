package stripeclient

import (
	"context"
	"fmt"

	"github.com/stripe/stripe-go/v76"
)

// RefundParams is a refund to create.
type RefundParams struct {
	// Charge is the id of the charge to refund.
	Charge string
	// Amount is how much to refund, in the currency's smallest unit. Zero
	// refunds all that remains of the charge.
	Amount int64
	// Reason is "duplicate", "fraudulent", "requested_by_customer", or ""
	// for none.
	Reason         string
	IdempotencyKey string
	Metadata       map[string]string
}

// RefundCreate refunds a charge. Stripe treats a repeated IdempotencyKey as
// the same request and answers with the first refund (for about 24 hours).
// A charge already refunded in full is refused with the error code
// charge_already_refunded, which Classify finds definitive: past Stripe's
// window, RefundFind tells whether an earlier attempt made the refund.
func (c *Client) RefundCreate(ctx context.Context, params *RefundParams) (*stripe.Refund, error) {
	stripeParams := &stripe.RefundParams{
		Params:   stripe.Params{Context: ctx},
		Metadata: params.Metadata,
		Charge:   stripe.String(params.Charge),
	}
	if params.Amount != 0 {
		stripeParams.Amount = stripe.Int64(params.Amount)
	}
	if params.Reason != "" {
		stripeParams.Reason = stripe.String(params.Reason)
	}
	stripeParams.SetIdempotencyKey(params.IdempotencyKey)
	refund, err := c.refunds.New(stripeParams)
	if err != nil {
		return nil, fmt.Errorf("creating Stripe refund of charge %s: %w", params.Charge, err)
	}
	return refund, nil
}

// RefundFind returns the charge's refund whose metadata[key] is value, or
// nil if there is none. It pages through all of the charge's refunds.
func (c *Client) RefundFind(ctx context.Context, charge, key, value string) (*stripe.Refund, error) {
	var found *stripe.Refund
	err := c.RefundList(ctx, charge, func(refund *stripe.Refund) bool {
		if refund.Metadata[key] == value {
			found = refund
			return false
		}
		return true
	})
	return found, err
}

// RefundList calls fn for each refund, newest first, of charge (of every
// charge if charge is empty), until fn returns false. It pages through
// Stripe's list, so it works for any number of refunds.
func (c *Client) RefundList(ctx context.Context, charge string, fn func(*stripe.Refund) bool) error {
	params := &stripe.RefundListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)}}
	if charge != "" {
		params.Charge = stripe.String(charge)
	}
	iter := c.refunds.List(params)
	for iter.Next() {
		if !fn(iter.Refund()) {
			return nil
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("listing Stripe refunds: %w", err)
	}
	return nil
}
