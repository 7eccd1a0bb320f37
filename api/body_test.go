package api_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/api"
	"github.com/rocketrides/rocketrides/db/testfactory"
	"github.com/rocketrides/rocketrides/problem"
	"github.com/rocketrides/rocketrides/rides"
)

// TestUnreadableBody sends bodies that cannot be read whole over a real
// socket: each is the client's mistake, answered with a 4xx problem and
// logged at info, never a 500.
func TestUnreadableBody(t *testing.T) {
	forEachAuthMode(t, testUnreadableBody)
}

func testUnreadableBody(t *testing.T) {
	t.Parallel()

	// A slow body waits out a short read timeout; other bodies get a long
	// one, so that a busy machine cannot turn their 400 into a 408.
	const (
		shortReadTimeout = 500 * time.Millisecond
		longReadTimeout  = time.Minute
	)
	form := validForm().Encode()

	tests := []struct {
		name string
		// framing is the header that frames the body, and body what is
		// sent of it before the client stops writing.
		framing string
		body    string
		// closeWrite half-closes the connection after body; otherwise the
		// client waits without sending more.
		closeWrite  bool
		readTimeout time.Duration
		status      int
		kind        string
	}{
		{name: "SlowerThanReadTimeout", framing: "Content-Length: 200", body: form[:10], readTimeout: shortReadTimeout, status: http.StatusRequestTimeout, kind: "request-timeout"},
		{name: "SlowerThanReadTimeoutChunked", framing: "Transfer-Encoding: chunked", body: "a\r\n" + form[:10] + "\r\n", readTimeout: shortReadTimeout, status: http.StatusRequestTimeout, kind: "request-timeout"},
		{name: "ShorterThanContentLength", framing: "Content-Length: 200", body: form, closeWrite: true, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "MalformedChunkSize", framing: "Transfer-Encoding: chunked", body: "zz\r\n" + form + "\r\n0\r\n\r\n", status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "TruncatedChunk", framing: "Transfer-Encoding: chunked", body: "ff\r\n" + form, closeWrite: true, status: http.StatusBadRequest, kind: "malformed-body"},
		{name: "ChunkedWithoutEnd", framing: "Transfer-Encoding: chunked", body: "a\r\n" + form[:10] + "\r\n0\r\n", closeWrite: true, status: http.StatusBadRequest, kind: "malformed-body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			logger := slog.New(slog.NewTextHandler(logs, nil))
			bundle := setup(t, &setupOpts{api: &api.ServerConfig{Logger: logger}})
			server := httptest.NewUnstartedServer(bundle.server)
			server.Config.ReadTimeout = cmp.Or(tt.readTimeout, longReadTimeout)
			server.Start()
			t.Cleanup(server.Close)

			conn, err := net.Dial("tcp", server.Listener.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			_, err = io.WriteString(conn, "POST "+rides.RequestPath+" HTTP/1.1\r\n"+
				"Host: rocketrides.test\r\n"+
				"Authorization: "+bundle.authOf(bundle.user)+"\r\n"+
				"Idempotency-Key: "+testfactory.KeyValue()+"\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\n"+
				tt.framing+"\r\n\r\n"+tt.body)
			require.NoError(t, err)
			if tt.closeWrite {
				require.NoError(t, conn.(*net.TCPConn).CloseWrite())
			}

			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			response, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer response.Body.Close()
			require.Equal(t, tt.status, response.StatusCode)
			require.Equal(t, problem.ContentType, response.Header.Get("Content-Type"))
			var details problem.Details
			require.NoError(t, json.NewDecoder(response.Body).Decode(&details))
			require.Equal(t, problem.TypeBase+tt.kind, details.Type)
			require.Equal(t, tt.status, details.Status)

			require.Contains(t, logs.String(), `level=INFO msg="api: request body unreadable"`)
			require.NotContains(t, logs.String(), "level=ERROR")
			require.Zero(t, bundle.fake.ChargeRequests())
		})
	}
}

// syncBuffer is a bytes.Buffer that a server's goroutines may write while
// a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
