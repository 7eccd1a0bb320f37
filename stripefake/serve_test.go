package stripefake_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/stripefake"
	"github.com/rocketrides/rocketrides/stripefake/stripefaketest"
)

func TestServeUntilCancelled(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fake := stripefake.New(stripefake.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- fake.Serve(ctx, listener) }()

	sc := stripefaketest.NewClient("http://" + listener.Addr().String())
	customer, err := sc.Customers.New(&stripe.CustomerParams{Source: stripe.String("tok_visa")})
	require.NoError(t, err)
	_, err = sc.Charges.New(chargeParams(customer.ID, 1250, "ride-5"))
	require.NoError(t, err)

	cancel()
	require.NoError(t, <-served, "a graceful shutdown is no error")
	require.Len(t, fake.Charges(), 1)
	_, err = net.Dial("tcp", listener.Addr().String())
	require.Error(t, err, "the listener is closed")
}

func TestListenAndServeReportsListenErrors(t *testing.T) {
	t.Parallel()

	err := stripefake.ListenAndServe(t.Context(), "127.0.0.1:-1", stripefake.Config{})

	require.ErrorContains(t, err, "stripefake: listen on 127.0.0.1:-1")
}
