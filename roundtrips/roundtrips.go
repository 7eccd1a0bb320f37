// Package roundtrips is a TCP proxy in front of PostgreSQL that counts the
// round trips and the transactions of whoever connects through it, from the
// bytes on the wire: the API's tests and the bench measure with it, so the
// counts owe nothing to the code they judge.
package roundtrips

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy is a TCP proxy on loopback in front of PostgreSQL that counts, on
// every connection it carries, the round trips and the transactions. It
// measures whoever connects through it the same way (a test's pool, the
// bench's API process, its limit, its peer), from the bytes on the wire.
//
// A round trip is counted each time a client starts sending after the
// server has answered it (a pipelined batch is one), less those whose answer
// ran no statement: a connection's start-up, and pgx preparing a statement
// it has not used on that connection before (a Parse, a Describe and a
// Sync), which each connection does once per statement and a longer run
// spreads thinner. A transaction is counted at each ReadyForQuery ('Z') that says the connection is idle
// again after a transaction block, or after a statement ran outside one (an
// implicit transaction): what PostgreSQL counts in pg_stat_database's
// xact_commit and xact_rollback, less the transactions that ran no
// statement (a Parse and its Sync).
type Proxy struct {
	listener net.Listener
	target   string

	roundTrips   atomic.Int64
	transactions atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port) until close.
func NewProxy(target string) (*Proxy, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the database proxy: %w", err)
	}
	p := &Proxy{listener: listener, target: target, conns: make(map[net.Conn]struct{})}
	go p.serve()
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.listener.Addr().String() }

// Counts are a proxy's counts since its last reset.
type Counts struct {
	RoundTrips   int64
	Transactions int64
}

// Reset starts new counts; the connections open stay open.
func (p *Proxy) Reset() {
	p.roundTrips.Store(0)
	p.transactions.Store(0)
}

// Counts returns the counts since the last reset.
func (p *Proxy) Counts() Counts {
	return Counts{RoundTrips: p.roundTrips.Load(), Transactions: p.transactions.Load()}
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() {
	_ = p.listener.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for conn := range p.conns {
		_ = conn.Close()
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		go p.forward(client)
	}
}

func (p *Proxy) track(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conn := range conns {
		p.conns[conn] = struct{}{}
	}
}

func (p *Proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conn := range conns {
		delete(p.conns, conn)
		_ = conn.Close()
	}
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.track(client, server)
	defer p.untrack(client, server)
	// answered is set once the server has sent something since the client
	// last sent: the client's next bytes begin a new round trip. The
	// client's first bytes begin one too.
	var answered atomic.Bool
	answered.Store(true)
	go func() {
		defer p.untrack(client, server)
		p.pipe(client, server, func(_ []byte) {
			// Counted before the bytes go on: the answer to them cannot
			// come before this.
			if answered.Swap(false) {
				p.roundTrips.Add(1)
			}
		})
	}()
	parser := &pgMessages{}
	p.pipe(server, client, func(chunk []byte) {
		ended, idle := parser.feed(chunk)
		p.transactions.Add(ended)
		p.roundTrips.Add(-idle)
		// Set before the bytes reach the client, which can only send its
		// next request after reading them.
		answered.Store(true)
	})
}

// pipe copies src to dst, showing each chunk to see before it is written.
func (p *Proxy) pipe(src, dst net.Conn, see func([]byte)) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			see(buf[:n])
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pgMessages follows the messages a PostgreSQL server sends on one
// connection (a type byte, then a 4-byte length that counts itself) across
// the chunks they arrive in, and counts the transactions that end.
type pgMessages struct {
	started bool

	// header holds the part of a message's header read so far, and skip
	// how many bytes of the current message's body are still to come.
	header []byte
	skip   int

	// ranStatement is set once a statement completed or failed since the
	// last ReadyForQuery; inBlock is whether the last ReadyForQuery said a
	// transaction block was open.
	ranStatement bool
	inBlock      bool

	// wantStatus is set when the next byte is a ReadyForQuery's status.
	wantStatus bool
}

// feed reads a chunk of the server's bytes and returns how many
// transactions ended in it, and how many ReadyForQuery messages in it came
// after no statement (the end of a start-up or of a preparation).
func (m *pgMessages) feed(chunk []byte) (ended, idle int64) {
	if !m.started && len(chunk) > 0 {
		m.started = true
		// An answer to SSLRequest or GSSENCRequest is one byte, 'N' to
		// refuse; no message starts with 'N' before authentication.
		if chunk[0] == 'N' {
			chunk = chunk[1:]
		}
	}
	for len(chunk) > 0 {
		if m.wantStatus {
			if !m.ranStatement {
				idle++
			}
			ended += m.readyForQuery(chunk[0])
			m.wantStatus = false
			m.skip--
			chunk = chunk[1:]
			continue
		}
		if m.skip > 0 {
			n := min(m.skip, len(chunk))
			m.skip -= n
			chunk = chunk[n:]
			continue
		}
		need := 5 - len(m.header)
		n := min(need, len(chunk))
		m.header = append(m.header, chunk[:n]...)
		chunk = chunk[n:]
		if len(m.header) < 5 {
			continue
		}
		kind := m.header[0]
		m.skip = int(binary.BigEndian.Uint32(m.header[1:5])) - 4
		m.header = m.header[:0]
		switch kind {
		case 'C', 'E': // CommandComplete, ErrorResponse
			m.ranStatement = true
		case 'Z': // ReadyForQuery: one status byte
			m.wantStatus = m.skip > 0
		}
	}
	return ended, idle
}

// readyForQuery takes a ReadyForQuery's status ('I' idle, 'T' in a block,
// 'E' in a failed block) and returns 1 if a transaction just ended.
func (m *pgMessages) readyForQuery(status byte) int64 {
	var ended int64
	if status == 'I' && (m.inBlock || m.ranStatement) {
		ended = 1
	}
	m.inBlock = status != 'I'
	m.ranStatement = false
	return ended
}
