// Package stripefaketest runs a [stripefake.Server] for the duration of a
// test, and connects stripe-go clients to it.
package stripefaketest

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/rocketrides/rocketrides/stripefake"
)

// APIKey is the API key that NewClient uses. The fake accepts any
// non-empty key.
const APIKey = "sk_test_stripefake"

// NewServer starts a fake Stripe, configured by config, for the duration
// of t, and returns it with its base URL (such as "http://127.0.0.1:4242"),
// to use as stripe.BackendConfig.URL. If config.Logger is nil, the fake
// logs to t's output, request lines included (they are at debug level),
// which go test shows for failed tests and with -v.
func NewServer(t testing.TB, config stripefake.Config) (*stripefake.Server, string) {
	t.Helper()
	if config.Logger == nil {
		config.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	fake := stripefake.New(config)
	server := httptest.NewServer(fake)
	t.Cleanup(server.Close)
	return fake, server.URL
}

// NewClient returns a stripe-go client of the fake at baseURL. It makes
// no retries and logs nothing, so that a test sees every answer the fake
// gives, failures included.
func NewClient(baseURL string) *client.API {
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(baseURL),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return client.New(APIKey, backends)
}
