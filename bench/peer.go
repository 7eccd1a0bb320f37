package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rocketrides/rocketrides/bench/dbospeer"
)

// servePeer is the serve-peer mode: it starts the peer (package dbospeer) on the
// database and the Stripe that args name and serves its handler on -addr,
// with GET /readyz answering 200 once it is up, until ctx is done.
func servePeer(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet(servePeerMode, flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:0", "address to serve on")
	databaseURL := flags.String("database-url", "", "PostgreSQL URL")
	stripeURL := flags.String("stripe-url", "", "the Stripe fake's URL")
	poolMaxConns := flags.Int("pool-max-conns", poolMaxConnsDefault, "size of the peer's pool")
	if err := flags.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With(slog.String("process", "peer"))
	peer, err := dbospeer.New(ctx, &dbospeer.Config{
		DatabaseURL:  *databaseURL,
		StripeURL:    *stripeURL,
		StripeKey:    stripeAPIKey,
		PoolMaxConns: *poolMaxConns,
		Logger:       logger,
	})
	if err != nil {
		return fmt.Errorf("starting the peer: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", peer.Handler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listening for the peer: %w", err), peer.Close(context.WithoutCancel(ctx)))
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = server.Shutdown(shutdownCtx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, peer.Close(context.WithoutCancel(ctx)))
}
