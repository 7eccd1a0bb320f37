package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"
)

// serveBareMode is the first argument with which the bench runs as the
// bare handler (see startBare), not as the bench.
const serveBareMode = "serve-bare"

// serveBare is the serve-bare mode: the bare handler of a limit on
// -database-url (see bareHandler), served on -addr, with GET /readyz
// answering 200, until ctx is done. It runs as a process of its own, as the
// API does, so that neither shares its runtime with the load generator.
func serveBare(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet(serveBareMode, flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:0", "address to serve on")
	databaseURL := flags.String("database-url", "", "PostgreSQL URL")
	poolMaxConns := flags.Int("pool-max-conns", poolMaxConnsDefault, "size of the pool")
	concurrency := flags.Int("concurrency", 1, "most requests at once, for the connections to Stripe kept open")
	stripeURL := flags.String("stripe-url", "", "Stripe fake that new keys are charged on")
	if err := flags.Parse(args); err != nil {
		return err
	}
	lim, err := newLimit(ctx, *databaseURL, *poolMaxConns, *concurrency, isolationReadCommitted, *stripeURL)
	if err != nil {
		return err
	}
	defer lim.close()
	mux := http.NewServeMux()
	mux.Handle("POST /rides", lim.bareHandler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}
