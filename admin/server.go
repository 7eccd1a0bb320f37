// Package admin is the operator's HTTP listener of rocket-rides: River UI,
// River's own web UI, showing the jobs this system stages and River works
// (ride receipts, cancelled receipts with their errors), and the Prometheus
// metrics. It is a listener of its own, on a loopback address by default,
// never the public API's: River UI has no authentication and can retry,
// cancel and delete jobs.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"

	"github.com/rocketrides/rocketrides/metrics"
)

// Defaults of ServerConfig.
const (
	ServerAddrDefault            = "127.0.0.1:5001"
	ServerShutdownTimeoutDefault = 10 * time.Second
)

// Paths the Server serves.
const (
	// PathMetrics serves the process's Prometheus metrics.
	PathMetrics = "/metrics"

	// PathPprof is where Go's profiles are served (net/http/pprof): go tool
	// pprof http://127.0.0.1:5001/debug/pprof/heap, or /profile for CPU.
	PathPprof = "/debug/pprof/"

	// PathRiverUI is where River UI lives; its pages and its API are under
	// it, and / redirects to it.
	PathRiverUI = "/riverui/"
)

// ServerConfig configures a Server. Zero fields take their defaults.
type ServerConfig struct {
	// Addr is the address (host:port) the server listens on. Empty means
	// ServerAddrDefault; port 0 takes a free port (Server.Addr says which).
	Addr string

	// Logger receives the server's start-up and stopped lines and River
	// UI's errors. Nil discards them.
	Logger *slog.Logger

	// ShutdownTimeout is how long Stop waits for requests in flight. Zero
	// means ServerShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *ServerConfig) withDefaults() *ServerConfig {
	config := ServerConfig{}
	if c != nil {
		config = *c
	}
	if config.Addr == "" {
		config.Addr = ServerAddrDefault
	}
	if config.Logger == nil {
		config.Logger = slog.New(slog.DiscardHandler)
	}
	if config.ShutdownTimeout == 0 {
		config.ShutdownTimeout = ServerShutdownTimeoutDefault
	}
	return &config
}

// validate rejects an address that is not host:port and a negative timeout.
func (c *ServerConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("Addr must be host:port, got %q", c.Addr)
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("ShutdownTimeout must not be negative, got %s", c.ShutdownTimeout)
	}
	return nil
}

// Server serves River UI and the metrics on the operator's address. It is
// a service: Start listens and returns, Stop shuts it down.
type Server struct {
	config  *ServerConfig
	handler http.Handler
	riverUI *riverui.Handler

	addr   string // where it listens, once started
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServer returns a server of River UI on riverClient, whose database it
// shows (an insert-only client will do: River UI only reads and updates
// jobs), and of m's metrics.
func NewServer(riverClient *river.Client[pgx.Tx], m *metrics.Metrics, config *ServerConfig) (*Server, error) {
	if riverClient == nil {
		return nil, errors.New("admin: a River client is required")
	}
	if m == nil {
		return nil, errors.New("admin: metrics are required")
	}
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	riverUI, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(riverClient, nil),
		Logger:    config.Logger,
		Prefix:    PathRiverUI,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: creating River UI: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, m.Handler())
	mux.Handle(PathRiverUI, riverUI)
	mux.HandleFunc("GET "+PathPprof, pprof.Index)
	mux.HandleFunc("GET "+PathPprof+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+PathPprof+"profile", pprof.Profile)
	mux.HandleFunc("GET "+PathPprof+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+PathPprof+"trace", pprof.Trace)
	mux.Handle("GET /{$}", http.RedirectHandler(PathRiverUI, http.StatusFound))
	return &Server{config: config, handler: mux, riverUI: riverUI}, nil
}

// Addr is the address the server listens on, once started: the configured
// one, with the port the system chose for port 0.
func (s *Server) Addr() string {
	return s.addr
}

// Start listens, starts River UI's background queries and serves in a
// goroutine until ctx is done or Stop is called. It returns an error if the
// address is taken.
func (s *Server) Start(ctx context.Context) error {
	if s.done != nil {
		return errors.New("admin: already started")
	}
	listener, err := net.Listen("tcp", s.config.Addr)
	if err != nil {
		return fmt.Errorf("admin: listening on %s: %w", s.config.Addr, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	if err := s.riverUI.Start(runCtx); err != nil {
		cancel()
		_ = listener.Close()
		return fmt.Errorf("admin: starting River UI: %w", err)
	}
	s.addr = listener.Addr().String()
	s.cancel = cancel
	s.done = make(chan struct{})

	server := &http.Server{
		Handler:           s.handler,
		IdleTimeout:       2 * time.Minute,
		ReadHeaderTimeout: 5 * time.Second,
		// Requests in flight finish on shutdown, within ShutdownTimeout.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(runCtx) },
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			s.config.Logger.ErrorContext(runCtx, "admin: serving failed", slog.String("error", err.Error()))
			cancel()
		}
	}()
	go func() {
		defer close(s.done)
		<-runCtx.Done()
		shutdownCtx, shutdownCancel := context.WithTimeout(context.WithoutCancel(runCtx), s.config.ShutdownTimeout)
		defer shutdownCancel()
		if err := server.Shutdown(shutdownCtx); err != nil {
			s.config.Logger.WarnContext(runCtx, "admin: requests did not finish in time", slog.String("error", err.Error()))
			_ = server.Close()
		}
		<-served
		s.config.Logger.InfoContext(runCtx, "admin: stopped")
	}()

	s.config.Logger.InfoContext(ctx, "admin: started",
		slog.String("river_ui", "http://"+s.addr+PathRiverUI),
		slog.String("metrics", "http://"+s.addr+PathMetrics),
	)
	return nil
}

// Stop shuts the server down, letting requests in flight finish for up to
// ShutdownTimeout, and waits until it has. It is safe to call when the
// server was not started.
func (s *Server) Stop() {
	if s.done == nil {
		return
	}
	s.cancel()
	<-s.done
}
