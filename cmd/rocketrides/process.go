package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rocketrides/rocketrides/db"
	"github.com/rocketrides/rocketrides/idempotency"
	"github.com/rocketrides/rocketrides/metrics"
	"github.com/rocketrides/rocketrides/rides"
	"github.com/rocketrides/rocketrides/stripeclient"
	"github.com/rocketrides/rocketrides/stripefake"
)

// process is what a subcommand runs on: its logger, its pool, its metrics,
// and, for those that need them, its Stripe client and the ride creator.
type process struct {
	creator *rides.Creator // nil unless processConfig.phase was set
	logger  *slog.Logger
	metrics *metrics.Metrics
	pool    *pgxpool.Pool
	stripe  *stripeclient.Client // nil unless processConfig.stripe was set
}

// processConfig says what newProcess builds.
type processConfig struct {
	// authMode is the ride creator's authentication mode (AUTH_MODE);
	// empty for a process that serves no API.
	authMode string

	// maxConns is the most database connections the process opens.
	maxConns int32

	// name tags every line of the process's logger (process=name).
	name string

	// phase, if set, makes newProcess build the ride creator on stripe.
	phase *phaseFlags

	// stripe is the process's Stripe client, if it needs one.
	stripe *stripeclient.Client
}

// newProcess connects to the database and builds what config asks for. The
// caller closes it.
func newProcess(ctx context.Context, g *Globals, config *processConfig) (*process, error) {
	pool, err := g.pool(ctx, config.maxConns)
	if err != nil {
		return nil, err
	}
	p := &process{logger: g.logger(config.name), metrics: metrics.New(), pool: pool, stripe: config.stripe}
	if config.phase != nil {
		if p.creator, err = p.newCreator(&g.dbFlags, config.phase, rides.AuthMode(config.authMode)); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return p, nil
}

// newCreator builds the ride workflow on the process's pool and Stripe,
// authenticating requests in authMode.
func (p *process) newCreator(dbFlags *dbFlags, phase *phaseFlags, authMode rides.AuthMode) (*rides.Creator, error) {
	isolation, err := db.ParseIsolation(phase.PhaseIsolation)
	if err != nil {
		return nil, err
	}
	bounded, err := dbFlags.bounded(p.pool)
	if err != nil {
		return nil, err
	}
	engine, err := idempotency.NewEngine(bounded, &idempotency.EngineConfig{
		Isolation:        isolation,
		LockTimeout:      phase.LockTimeout,
		Logger:           p.logger,
		ObservePhaseFunc: p.metrics.ObservePhase,
		RetriedFunc:      p.metrics.TxRetried,
		TxTimeout:        dbFlags.DBTxTimeout,
	})
	if err != nil {
		return nil, err
	}
	return rides.NewCreator(bounded, engine, p.stripe, &rides.CreatorConfig{
		AuthMode:                authMode,
		Logger:                  p.logger,
		StripeIdempotencyWindow: phase.StripeIdempotencyWindow,
	})
}

// engineCloseTimeout bounds the wait, at exit, for the unlocks the engine
// still retries in the background.
const engineCloseTimeout = 10 * time.Second

// close waits for the engine's unlocks still pending, then closes the
// process's pool.
func (p *process) close() {
	if p.creator != nil {
		ctx, cancel := context.WithTimeout(context.Background(), engineCloseTimeout)
		defer cancel()
		if err := p.creator.Engine().Close(ctx); err != nil {
			p.logger.Error("idempotency: " + err.Error())
		}
	}
	p.pool.Close()
}

// serveMetrics serves the process's metrics on port of the loopback
// interface until ctx is done; port 0 serves nothing.
func (p *process) serveMetrics(ctx context.Context, port int) {
	if port == 0 {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.metrics.Handler())
	server := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	go func() {
		if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			p.logger.ErrorContext(ctx, "metrics server failed", slog.String("error", err.Error()))
		}
	}()
}

// service is a background service of package jobs.
type service interface {
	Start(ctx context.Context) error
	Stop()
}

// runService starts service, and stops it once ctx is done.
func runService(ctx context.Context, service service) error {
	if err := service.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	service.Stop()
	return nil
}

// newStripe returns the Stripe client that stripe says. Without an API key
// it starts the built-in fake, which serves until the process exits, and
// reports fake as true: a fake starts empty, so the caller seeds the demo
// users in it. The fake outlives ctx on purpose: once ctx is done, the
// process's parts are stopping, and a request they finish meanwhile may
// still call Stripe.
func newStripe(ctx context.Context, g *Globals, stripe *stripeFlags) (client *stripeclient.Client, fake bool, err error) {
	config := &stripeclient.ClientConfig{APIBase: stripe.StripeAPIBase, APIKey: stripe.StripeAPIKey, Timeout: stripe.StripeTimeout}
	if config.APIKey == "" {
		logger := g.logger("stripe-fake")
		if config.APIBase, err = startStripeFake(logger); err != nil {
			return nil, false, err
		}
		config.APIKey = "sk_test_fake"
		logger.WarnContext(ctx, "stripe-fake: started, as STRIPE_API_KEY is unset", slog.String("stripe_api_base", config.APIBase))
	}
	client, err = stripeclient.NewClient(config)
	return client, stripe.StripeAPIKey == "", err
}

// startStripeFake serves the Stripe fake on a free loopback port until the
// process exits and returns its base URL.
func startStripeFake(logger *slog.Logger) (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening for the Stripe fake: %w", err)
	}
	server := &http.Server{Handler: stripefake.New(stripefake.Config{Logger: logger}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }()
	return "http://" + listener.Addr().String(), nil
}

// oneLine makes an error fit on one line: pgx lists each address it tried on
// a line of its own.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
