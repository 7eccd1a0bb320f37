// Package faultproxy is a TCP proxy on loopback that can freeze or cut the
// connections it carries: a database that accepts and never answers, or one
// that drops every connection. The robustness tests of cmd/rocketrides and
// the chaos run put it between an API and PostgreSQL.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
)

// Mode is what the proxy does with its connections.
type Mode string

// Modes of a Proxy.
const (
	// Pass forwards everything.
	Pass Mode = "pass"

	// Freeze accepts connections and forwards nothing: bytes are held until
	// the mode changes, and then dropped with their connections.
	Freeze Mode = "freeze"

	// Cut closes every connection and refuses new ones.
	Cut Mode = "cut"
)

// Proxy forwards connections to one target, in the Mode set last. It is
// safe for concurrent use.
type Proxy struct {
	listener net.Listener
	target   string

	mu    sync.Mutex
	cond  *sync.Cond
	conns map[net.Conn]struct{}
	mode  Mode
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port), in Pass mode, until Close.
func NewProxy(target string) (*Proxy, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening: %w", err)
	}
	p := &Proxy{listener: listener, target: target, conns: make(map[net.Conn]struct{}), mode: Pass}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	return p, nil
}

// Addr is the proxy's address (host:port), to connect to instead of the
// target.
func (p *Proxy) Addr() string { return p.listener.Addr().String() }

// Set switches the mode. Leaving Freeze or entering Cut closes every
// connection open.
func (p *Proxy) Set(mode Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == Freeze || mode == Cut {
		for conn := range p.conns {
			_ = conn.Close()
		}
		clear(p.conns)
	}
	p.mode = mode
	p.cond.Broadcast()
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() {
	_ = p.listener.Close()
	p.Set(Cut)
}

func (p *Proxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode == Cut {
			p.mu.Unlock()
			_ = client.Close()
			continue
		}
		p.conns[client] = struct{}{}
		p.mu.Unlock()
		if mode == Freeze {
			continue // held until the mode changes
		}
		go p.forward(client)
	}
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	go p.pipe(server, client)
	p.pipe(client, server)
}

// pipe copies src to dst, holding data back while the proxy is frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.mode == Freeze {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
