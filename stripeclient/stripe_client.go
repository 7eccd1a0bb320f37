// Package stripeclient is the narrow part of Stripe that rocket-rides uses,
// over stripe-go: create and look up customers, create a charge with an
// idempotency key, find and list charges, and the same for refunds. It sorts
// Stripe's errors by what a caller can do about them.
package stripeclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/charge"
	"github.com/stripe/stripe-go/v76/customer"
	"github.com/stripe/stripe-go/v76/refund"
)

// Defaults of ClientConfig.
const (
	// APIBaseDefault is Stripe itself.
	APIBaseDefault = stripe.APIURL

	// TimeoutDefault bounds each call to Stripe. It is well under the
	// idempotency lock timeout, so a request stalled on Stripe gives up long
	// before another may take its key over.
	TimeoutDefault = 20 * time.Second

	// maxIdleConnsPerHost is how many connections to Stripe stay open
	// between calls.
	maxIdleConnsPerHost = 64
)

// ClientConfig configures a Client. Zero fields take their defaults.
type ClientConfig struct {
	// APIBase is where Stripe is. Empty means APIBaseDefault.
	APIBase string

	// APIKey is the secret key. It is required.
	APIKey string

	// Timeout bounds each call, connection included. Zero means
	// TimeoutDefault.
	Timeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ClientConfig) withDefaults() *ClientConfig {
	var config ClientConfig
	if c != nil {
		config = *c
	}
	config.APIBase = cmp.Or(config.APIBase, APIBaseDefault)
	config.Timeout = cmp.Or(config.Timeout, TimeoutDefault)
	return &config
}

// validate rejects settings the client cannot call Stripe with.
func (c *ClientConfig) validate() error {
	if c.APIKey == "" {
		return errors.New("APIKey is required")
	}
	if u, err := url.Parse(c.APIBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("APIBase must be an http or https URL, got %q", c.APIBase)
	}
	if c.Timeout < 0 {
		//lint:ignore ST1005 it starts with the config field it names
		return fmt.Errorf("Timeout must not be negative, got %s", c.Timeout)
	}
	return nil
}

// Client calls Stripe. It is safe for concurrent use. It holds stripe-go's
// client of each resource it uses, not the client of every resource
// (stripe-go/client): that one links in some 130 packages, over half of a
// cold build of rocketrides.
type Client struct {
	charges   *charge.Client
	customers *customer.Client
	refunds   *refund.Client
}

// NewClient returns a client for the Stripe at config.APIBase. A nil config
// is rejected for want of an APIKey. The client never retries on its own: an
// indeterminate failure goes back to the caller, whose retry sends the same
// idempotency key.
func NewClient(config *ClientConfig) (*Client, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("stripe client: %w", err)
	}
	// Keep a connection per concurrent request alive: the default transport
	// keeps two, and a new connection to Stripe costs a TLS handshake.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: config.Timeout, Transport: transport},
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(0),
		URL:               stripe.String(config.APIBase),
	})
	return &Client{
		charges:   &charge.Client{B: backends.API, Key: config.APIKey},
		customers: &customer.Client{B: backends.API, Key: config.APIKey},
		refunds:   &refund.Client{B: backends.API, Key: config.APIKey},
	}, nil
}

// ChargeParams is a charge to create.
type ChargeParams struct {
	Amount         int64
	Currency       string
	Customer       string
	Description    string
	IdempotencyKey string
	Metadata       map[string]string
}

// ChargeCreate creates a charge. Stripe treats a repeated IdempotencyKey as
// the same request and answers with the first charge (for about 24 hours).
func (c *Client) ChargeCreate(ctx context.Context, params *ChargeParams) (*stripe.Charge, error) {
	stripeParams := &stripe.ChargeParams{
		Params:      stripe.Params{Context: ctx},
		Metadata:    params.Metadata,
		Amount:      stripe.Int64(params.Amount),
		Currency:    stripe.String(params.Currency),
		Customer:    stripe.String(params.Customer),
		Description: stripe.String(params.Description),
	}
	stripeParams.SetIdempotencyKey(params.IdempotencyKey)
	charge, err := c.charges.New(stripeParams)
	if err != nil {
		return nil, fmt.Errorf("creating Stripe charge: %w", err)
	}
	return charge, nil
}

// ChargeGet returns the charge with id, as Stripe has it now (refunded
// amount included).
func (c *Client) ChargeGet(ctx context.Context, id string) (*stripe.Charge, error) {
	charge, err := c.charges.Get(id, &stripe.ChargeParams{Params: stripe.Params{Context: ctx}})
	if err != nil {
		return nil, fmt.Errorf("getting Stripe charge %s: %w", id, err)
	}
	return charge, nil
}

// ChargeFind returns the customer's charge whose metadata[key] is value, or
// nil if there is none. It pages through all of the customer's charges.
func (c *Client) ChargeFind(ctx context.Context, customer, key, value string) (*stripe.Charge, error) {
	var found *stripe.Charge
	err := c.ChargeList(ctx, customer, func(charge *stripe.Charge) bool {
		if charge.Metadata[key] == value {
			found = charge
			return false
		}
		return true
	})
	return found, err
}

// ChargeList calls fn for each charge, newest first, of customer (of every
// customer if customer is empty), until fn returns false. It pages through
// Stripe's list, so it works for any number of charges.
func (c *Client) ChargeList(ctx context.Context, customer string, fn func(*stripe.Charge) bool) error {
	params := &stripe.ChargeListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)}}
	if customer != "" {
		params.Customer = stripe.String(customer)
	}
	iter := c.charges.List(params)
	for iter.Next() {
		if !fn(iter.Charge()) {
			return nil
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("listing Stripe charges: %w", err)
	}
	return nil
}

// CustomerCreate creates a customer paying with source (a token such as
// tok_visa) and returns its id.
func (c *Client) CustomerCreate(ctx context.Context, email, source string) (string, error) {
	customer, err := c.customers.New(&stripe.CustomerParams{
		Params:      stripe.Params{Context: ctx},
		Description: stripe.String("Customer for " + email),
		Email:       stripe.String(email),
		Source:      stripe.String(source),
	})
	if err != nil {
		return "", fmt.Errorf("creating Stripe customer: %w", err)
	}
	return customer.ID, nil
}

// CustomerExists reports whether Stripe knows the customer.
func (c *Client) CustomerExists(ctx context.Context, id string) (bool, error) {
	customer, err := c.customers.Get(id, &stripe.CustomerParams{Params: stripe.Params{Context: ctx}})
	var stripeErr *stripe.Error
	if errors.As(err, &stripeErr) && stripeErr.HTTPStatusCode == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("getting Stripe customer: %w", err)
	}
	return !customer.Deleted, nil
}

// Outcome sorts an error from Stripe by what the caller can do about it.
type Outcome int

const (
	// OutcomeIndeterminate means the charge or refund may or may not exist:
	// the network failed, Stripe failed (5xx), was overloaded (429), or was
	// still working on the same idempotency key (409). Retrying with the
	// same idempotency key settles it.
	OutcomeIndeterminate Outcome = iota

	// OutcomeDeclined means the card was declined: definitive, and the
	// message is for the customer.
	OutcomeDeclined

	// OutcomeRejected means Stripe refused the request for good (invalid
	// request, such as a refund of a charge already refunded, authentication,
	// permission): definitive, and a human must look.
	OutcomeRejected
)

// Classify returns the outcome of a failed Stripe call and, for a declined
// card, Stripe's message for the customer.
func Classify(err error) (Outcome, string) {
	var stripeErr *stripe.Error
	if !errors.As(err, &stripeErr) {
		return OutcomeIndeterminate, "" // network error, timeout, cancellation
	}
	switch {
	case stripeErr.Type == stripe.ErrorTypeCard:
		return OutcomeDeclined, stripeErr.Msg
	case stripeErr.HTTPStatusCode == http.StatusConflict,
		stripeErr.HTTPStatusCode == http.StatusTooManyRequests,
		stripeErr.HTTPStatusCode >= http.StatusInternalServerError,
		stripeErr.HTTPStatusCode == 0:
		return OutcomeIndeterminate, ""
	default:
		return OutcomeRejected, ""
	}
}
