package roundtrips

import (
	"context"
	"encoding/binary"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rocketrides/rocketrides/db/dbtest"
)

// proxiedConn connects to a fresh database through a new proxy.
func proxiedConn(t *testing.T) (*pgx.Conn, *Proxy) {
	t.Helper()
	parsed, err := url.Parse(dbtest.NewDatabaseURL(t))
	require.NoError(t, err)
	proxy, err := NewProxy(parsed.Host)
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	parsed.Host = proxy.Addr()
	conn, err := pgx.Connect(t.Context(), parsed.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, proxy
}

func TestProxyCountsRoundTripsAndTransactions(t *testing.T) {
	t.Parallel()
	conn, proxy := proxiedConn(t)
	ctx := t.Context()
	_, err := conn.Exec(ctx, "CREATE TABLE t (v int)")
	require.NoError(t, err)
	const insert = "INSERT INTO t VALUES ($1)"

	for _, tc := range []struct {
		name   string
		do     func() error
		counts Counts
	}{
		{"one statement, an implicit transaction", func() error {
			_, err := conn.Exec(ctx, insert, 1)
			return err
		}, Counts{RoundTrips: 1, Transactions: 1}},
		{"a transaction block, statement by statement", func() error {
			tx, err := conn.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, insert, 2); err != nil {
				return err
			}
			return tx.Commit(ctx)
		}, Counts{RoundTrips: 3, Transactions: 1}},
		{"a transaction block in one batch", func() error {
			batch := &pgx.Batch{}
			batch.Queue("BEGIN")
			batch.Queue(insert, 3)
			batch.Queue(insert, 4)
			batch.Queue("COMMIT")
			return conn.SendBatch(ctx, batch).Close()
		}, Counts{RoundTrips: 1, Transactions: 1}},
		{"a failed statement, a transaction rolled back", func() error {
			_, err := conn.Exec(ctx, "SELECT 1/0")
			require.Error(t, err)
			return nil
		}, Counts{RoundTrips: 1, Transactions: 1}},
		{"two statements", func() error {
			for range 2 {
				if _, err := conn.Exec(ctx, insert, 5); err != nil {
					return err
				}
			}
			return nil
		}, Counts{RoundTrips: 2, Transactions: 2}},
	} {
		// The first run prepares the statements, as a warm-up does.
		require.NoError(t, tc.do(), tc.name)
		proxy.Reset()
		require.NoError(t, tc.do(), tc.name)
		require.Equal(t, tc.counts, proxy.Counts(), tc.name)
	}

	// A statement new to the connection is prepared first, in a round trip
	// of its own that runs nothing: not counted.
	proxy.Reset()
	_, err = conn.Exec(ctx, "INSERT INTO t VALUES ($1 + 1)", 6)
	require.NoError(t, err)
	require.Equal(t, Counts{RoundTrips: 1, Transactions: 1}, proxy.Counts())

	// Nor is a new connection's start-up.
	proxy.Reset()
	other, err := pgx.Connect(ctx, conn.Config().ConnString())
	require.NoError(t, err)
	defer other.Close(ctx)
	require.Equal(t, Counts{}, proxy.Counts())
}

func TestPGMessagesFollowMessagesAcrossChunks(t *testing.T) {
	t.Parallel()
	message := func(kind byte, body ...byte) []byte {
		m := []byte{kind, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
		return append(m, body...)
	}
	var stream []byte
	stream = append(stream, 'N') // refusing SSL
	stream = append(stream, message('R', 0, 0, 0, 0)...)
	stream = append(stream, message('Z', 'I')...)                            // after start-up: no transaction
	stream = append(stream, message('C', []byte("SELECT 1\x00")...)...)      // an implicit transaction
	stream = append(stream, message('Z', 'I')...)                            // ends: 1
	stream = append(stream, message('1')...)                                 // ParseComplete alone
	stream = append(stream, message('Z', 'I')...)                            // no statement ran
	stream = append(stream, message('C', []byte("BEGIN\x00")...)...)         // a block
	stream = append(stream, message('Z', 'T')...)                            //
	stream = append(stream, message('E', []byte("SERROR\x00\x00")...)...)    // fails
	stream = append(stream, message('Z', 'E')...)                            //
	stream = append(stream, message('C', []byte("ROLLBACK\x00")...)...)      //
	stream = append(stream, message('Z', 'I')...)                            // ends: 2
	stream = append(stream, message('D', make([]byte, 100)...)...)           // a row, with a 'Z' in it
	stream = append(stream, message('C', []byte("SELECT 1\x00Z\x00")...)...) //
	stream = append(stream, message('Z', 'I')...)                            // ends: 3

	whole := &pgMessages{}
	ended, idle := whole.feed(stream)
	require.EqualValues(t, 3, ended)
	require.EqualValues(t, 2, idle, "the start-up's and the ParseComplete's ReadyForQuery")
	byteByByte := &pgMessages{}
	ended, idle = 0, 0
	for i := range stream {
		e, n := byteByByte.feed(stream[i : i+1])
		ended, idle = ended+e, idle+n
	}
	require.EqualValues(t, 3, ended)
	require.EqualValues(t, 2, idle)
}
