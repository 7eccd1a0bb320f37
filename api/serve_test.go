package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
)

// TestServeClosesIdleConnections: a keep-alive connection that sends no
// next request is closed after IdleTimeout, so the clients of a burst that
// stay connected do not keep the server's memory.
func TestServeClosesIdleConnections(t *testing.T) {
	t.Parallel()
	const idleTimeout = 300 * time.Millisecond
	bundle := setup(t, &setupOpts{api: &api.ServerConfig{IdleTimeout: idleTimeout}})

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- api.ServeListener(ctx, listener, bundle.server) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-served)
	})

	conn, err := net.Dial("tcp", listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
	require.NoError(t, err)
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, response.Body)
	require.NoError(t, err)
	require.NoError(t, response.Body.Close())
	require.Equal(t, http.StatusOK, response.StatusCode)
	require.False(t, response.Close, "the server closed the connection at once; nothing to time out")
	answered := time.Now()

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*idleTimeout)))
	_, err = reader.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection was not closed by the server")
	idle := time.Since(answered)
	require.GreaterOrEqual(t, idle, idleTimeout*2/3, "closed before the idle timeout")
}
