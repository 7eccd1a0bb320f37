// Package ridestest builds the ride workflow for tests: a Stripe client of a
// fake, and a creator on its own engine, each failing the test if its config
// is rejected.
package ridestest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

// NewCreator returns a creator on an engine of engineConfig (nil: every
// default), both on exec, charging through stripe. It authenticates in demo
// mode (by email), so that tests authenticate as their fixture users;
// every other setting has its default.
func NewCreator(t testing.TB, exec db.Executor, engineConfig *idempotency.EngineConfig, stripe *stripeclient.Client) *rides.Creator {
	t.Helper()
	engine, err := idempotency.NewEngine(exec, engineConfig)
	require.NoError(t, err)
	creator, err := rides.NewCreator(exec, engine, stripe, &rides.CreatorConfig{AuthMode: rides.AuthModeDemo})
	require.NoError(t, err)
	return creator
}

// NewStripe returns a Stripe client of the fake (or any Stripe) at baseURL,
// with the fake's API key.
func NewStripe(t testing.TB, baseURL string) *stripeclient.Client {
	t.Helper()
	client, err := stripeclient.NewClient(&stripeclient.ClientConfig{APIBase: baseURL, APIKey: stripefaketest.APIKey})
	require.NoError(t, err)
	return client
}
