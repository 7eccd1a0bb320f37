package main

import (
	"fmt"
	"net"
	"net/url"
	"sync"
)

// Modes of dbProxy.
const (
	proxyPass   = "pass"   // forward everything
	proxyFreeze = "freeze" // accept connections, forward nothing
)

// dbProxy is a TCP proxy between an API and PostgreSQL that can freeze the
// connections: a database that accepts and never answers.
type dbProxy struct {
	databaseURL string // the database's URL, through the proxy
	listener    net.Listener
	target      string

	mu    sync.Mutex
	cond  *sync.Cond
	conns map[net.Conn]struct{}
	mode  string
}

// newDBProxy listens on a loopback port and forwards to the database of
// databaseURL.
func newDBProxy(databaseURL string) (*dbProxy, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the database proxy: %w", err)
	}
	p := &dbProxy{listener: listener, target: u.Host, conns: make(map[net.Conn]struct{}), mode: proxyPass}
	u.Host = listener.Addr().String()
	p.databaseURL = u.String()
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	return p, nil
}

// set switches the mode; leaving freeze closes every connection it held.
func (p *dbProxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == proxyFreeze {
		for conn := range p.conns {
			_ = conn.Close()
		}
		clear(p.conns)
	}
	p.mode = mode
	p.cond.Broadcast()
}

func (p *dbProxy) close() {
	_ = p.listener.Close()
	p.set(proxyPass)
	p.mu.Lock()
	defer p.mu.Unlock()
	for conn := range p.conns {
		_ = conn.Close()
	}
}

func (p *dbProxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		frozen := p.mode == proxyFreeze
		p.conns[client] = struct{}{}
		p.mu.Unlock()
		if !frozen {
			go p.forward(client)
		}
	}
}

func (p *dbProxy) forward(client net.Conn) {
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
func (p *dbProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.mode == proxyFreeze {
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
