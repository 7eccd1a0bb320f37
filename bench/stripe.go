package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/stripefake"
)

// stripeAPIKey is the key every client of the bench's Stripe fake sends.
const stripeAPIKey = "sk_test_bench"

// benchUser is a user of the bench, with a customer in the Stripe fake.
type benchUser struct {
	email      string
	customerID string
	id         int64
}

// stripeStack is the bench's Stripe fake, served on a loopback port, and the
// users whose customers it knows.
type stripeStack struct {
	url   string
	users []*benchUser
}

// startStripe serves a Stripe fake until ctx is done, and creates numUsers
// users in the database, each with a customer in the fake.
func startStripe(ctx context.Context, pool *pgxpool.Pool, numUsers int) (*stripeStack, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the Stripe fake: %w", err)
	}
	server := &http.Server{Handler: stripefake.New(stripefake.Config{}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.ErrorContext(ctx, "bench: Stripe fake stopped", slog.String("error", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	stack := &stripeStack{url: "http://" + listener.Addr().String()}
	caller := newStripeCaller(stack.url, 1)
	for i := range numUsers {
		email := fmt.Sprintf("bench-%03d@rocketrides.test", i)
		customerID, err := caller.post(ctx, "/v1/customers", "", url.Values{"email": {email}, "source": {"tok_visa"}})
		if err != nil {
			return nil, fmt.Errorf("creating customer for %s: %w", email, err)
		}
		user := &benchUser{email: email, customerID: customerID}
		err = pool.QueryRow(ctx, `INSERT INTO users (email, stripe_customer_id) VALUES ($1, $2)
			ON CONFLICT (email) DO UPDATE SET stripe_customer_id = excluded.stripe_customer_id RETURNING id`,
			email, customerID).Scan(&user.id)
		if err != nil {
			return nil, fmt.Errorf("inserting user %s: %w", email, err)
		}
		stack.users = append(stack.users, user)
	}
	return stack, nil
}

// user returns the user that worker sends requests as: each worker has its
// own while there are enough.
func (s *stripeStack) user(worker int) *benchUser {
	return s.users[worker%len(s.users)]
}

// stripeCaller makes the limit's Stripe calls with net/http alone: a form
// POST with an Idempotency-Key, the id of the object created read from the
// answer.
type stripeCaller struct {
	base   string
	client *http.Client
}

// newStripeCaller returns a caller of the Stripe at base with keep-alive
// connections for concurrency callers.
func newStripeCaller(base string, concurrency int) *stripeCaller {
	transport := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, IdleConnTimeout: time.Minute}
	return &stripeCaller{base: base, client: &http.Client{Transport: transport, Timeout: 20 * time.Second}}
}

// charge charges customer $20 for ride rideID with the Stripe idempotency
// key stripeKey, as the API does, and returns the charge's id.
func (s *stripeCaller) charge(ctx context.Context, customer, stripeKey string, keyID, rideID int64) (string, error) {
	return s.post(ctx, "/v1/charges", stripeKey, url.Values{
		"amount":                       {"2000"},
		"currency":                     {"usd"},
		"customer":                     {customer},
		"description":                  {"Charge for ride " + strconv.FormatInt(rideID, 10)},
		"metadata[idempotency_key]":    {stripeKey},
		"metadata[idempotency_key_id]": {strconv.FormatInt(keyID, 10)},
		"metadata[ride_id]":            {strconv.FormatInt(rideID, 10)},
	})
}

// refund refunds charge in full, as the API does, and returns the refund's
// id.
func (s *stripeCaller) refund(ctx context.Context, charge, stripeKey string, keyID, rideID int64) (string, error) {
	return s.post(ctx, "/v1/refunds", stripeKey, url.Values{
		"charge":                       {charge},
		"reason":                       {"requested_by_customer"},
		"metadata[idempotency_key]":    {stripeKey},
		"metadata[idempotency_key_id]": {strconv.FormatInt(keyID, 10)},
		"metadata[ride_id]":            {strconv.FormatInt(rideID, 10)},
	})
}

// post posts form to path and returns the id of what it created.
func (s *stripeCaller) post(ctx context.Context, path, idempotencyKey string, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("building Stripe request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+stripeAPIKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("calling Stripe %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading Stripe's answer to %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("stripe %s answered %d: %s", path, resp.StatusCode, body)
	}
	var object struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &object); err != nil || object.ID == "" {
		return "", fmt.Errorf("stripe %s answered no id: %s", path, body)
	}
	return object.ID, nil
}
