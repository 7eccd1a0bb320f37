// Package dbospeer is rocket-rides' ride workflow (POST /rides in demo
// auth mode) written on DBOS Transact for Go, for the bench to run side by
// side with rocketrides' own engine, on the same PostgreSQL, through the same
// Stripe fake.
//
// A request's idempotency key is its workflow's id (the user's id and the
// key, so that keys are per user as in rocketrides), and the workflow is
// three durable steps, as DBOS's documentation recommends:
//
//  1. a transaction (dbos.RunAsTransaction) that inserts the ride and its
//     audit record ride.created, in one statement;
//  2. a step (dbos.RunAsStep) that charges the customer $20 through
//     stripe-go, with a Stripe idempotency key derived from the workflow id
//     (a declined card is the step's result, not its error: the workflow
//     finishes with a 402);
//  3. a transaction that records the charge id on the ride and builds the
//     201 response, which the workflow returns.
//
// DBOS records the workflow's result, so a request that comes again with the
// same key gets it back from dbos.RunWorkflow's handle, without running
// anything: its stored status and bytes, identical to the first answer. A
// request that comes while the workflow with its key still runs waits for
// that workflow's result (DBOS polls its status, every ResultPollInterval)
// and answers it too: it never starts a second workflow or a second charge.
//
// # Where its data lives
//
// One pgx pool (Config.PoolMaxConns connections) serves both the peer's
// queries and DBOS, which takes it as its system database pool
// (dbos.Config.SystemDBPool) and keeps one of its connections for its
// notification listener. DBOS's tables are in the schema SystemSchema of the
// same database, which DBOS creates and migrates at New; the ride and audit
// tables are in the schema Schema, which New creates if missing. Because the
// data source of the transactions is the system database's own pool, DBOS
// runs each transaction and its checkpoint as one database transaction (no
// transaction_completion table, no second commit): DBOS's documented fast
// path for a data source that is the system database.
//
// # How the bench starts it
//
//	peer, err := dbospeer.New(ctx, &dbospeer.Config{
//		DatabaseURL:  databaseURL, // rocketrides' database: its users table is read
//		StripeURL:    stripeURL,   // the Stripe fake's base URL
//		StripeKey:    "sk_test_...",
//		PoolMaxConns: 64,
//		Tracer:       counter, // optional: counts the pool's statements, DBOS's included
//	})
//	...
//	defer peer.Close(ctx)
//	listener, err := net.Listen("tcp", "127.0.0.1:0")
//	server := &http.Server{Handler: peer.Handler()}
//	go server.Serve(listener)
//
// The first New on a database migrates DBOS's schema (about 1.5 s on the
// development machine; later starts about 0.2 s). Once launched, DBOS polls
// its tables in the background, a few statements a second. To empty the
// peer between runs, truncate Schema's rides and audit_records, and
// SystemSchema's workflow_status (CASCADE), operation_outputs, workflow_input
// and workflow_output, which keep the workflows' steps, inputs and results;
// then send new keys only: a charge's Stripe idempotency key comes from its
// workflow id, and Stripe refuses it for another ride (400).
//
// # How it differs from rocketrides
//
// It is a peer for measuring, not a second implementation to run: a request
// is authenticated by its rider's email (the demo mode), a key sent again
// with other parameters replays the first workflow's answer (DBOS keeps the
// first input; rocketrides answers 409), a replay carries no
// Idempotent-Replayed header, no receipt job is staged, and a workflow that
// fails for good (the charge's step out of retries) stays failed: the same
// key answers the same 503 from then on, where rocketrides resumes it.
package dbospeer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/charge"
)

// Where the peer keeps its tables: its own (Schema) and DBOS's
// (SystemSchema), in the database of Config.DatabaseURL.
const (
	Schema       = "dbospeer"
	SystemSchema = "dbospeer_dbos"
)

// Defaults of Config.
const (
	// PoolMaxConnsDefault is the size of the pool DBOS makes for itself
	// when it is given none.
	PoolMaxConnsDefault = 20

	// ResultPollIntervalDefault is how often a request whose key's
	// workflow runs in another request polls for its result. DBOS's own
	// default is a second.
	ResultPollIntervalDefault = 20 * time.Millisecond

	// StripeTimeoutDefault bounds each call to Stripe, as rocketrides'
	// client does.
	StripeTimeoutDefault = 20 * time.Second

	// shutdownTimeoutDefault is how long Close lets workflows in flight
	// finish when its context has no deadline.
	shutdownTimeoutDefault = 10 * time.Second
)

// Config configures a Peer. Zero fields take their defaults.
type Config struct {
	// DatabaseURL is rocketrides' database: its users table is read, and
	// the peer's schemas are created in it. Required.
	DatabaseURL string

	// StripeURL is the Stripe fake's base URL (such as
	// "http://127.0.0.1:4242"). Required.
	StripeURL string

	// StripeKey is the Stripe API key, any sk_test_ key the fake accepts.
	// Required.
	StripeKey string

	// PoolMaxConns is the size of the one pool that the peer's queries and
	// DBOS share; DBOS holds one connection for its notification listener.
	// Zero means PoolMaxConnsDefault.
	PoolMaxConns int

	// Logger receives the peer's and DBOS's log lines. Nil discards them.
	Logger *slog.Logger

	// ResultPollInterval is how often a request that finds its key's
	// workflow running elsewhere polls for its result. Zero means
	// ResultPollIntervalDefault.
	ResultPollInterval time.Duration

	// Tracer, if set, traces the pool's statements (and its acquires and
	// releases, if it implements pgxpool's tracers): how the bench counts
	// round trips, DBOS's included.
	Tracer pgx.QueryTracer
}

// withDefaults returns a copy of c (nil: the zero config) with every default
// applied.
func (c *Config) withDefaults() *Config {
	var config Config
	if c != nil {
		config = *c
	}
	config.Logger = cmp.Or(config.Logger, slog.New(slog.DiscardHandler))
	config.PoolMaxConns = cmp.Or(config.PoolMaxConns, PoolMaxConnsDefault)
	config.ResultPollInterval = cmp.Or(config.ResultPollInterval, ResultPollIntervalDefault)
	return &config
}

// validate rejects settings the peer cannot run with.
func (c *Config) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("DatabaseURL is required")
	case c.StripeKey == "":
		return errors.New("StripeKey is required")
	case c.PoolMaxConns < 2:
		return fmt.Errorf("PoolMaxConns must be at least 2 (DBOS holds one for its listener), got %d", c.PoolMaxConns)
	case c.ResultPollInterval < 0:
		return fmt.Errorf("ResultPollInterval must not be negative, got %s", c.ResultPollInterval)
	}
	if u, err := url.Parse(c.StripeURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("StripeURL must be an http or https URL, got %q", c.StripeURL)
	}
	return nil
}

// Peer serves POST /rides on DBOS. It is safe for concurrent use.
type Peer struct {
	charges *charge.Client
	config  *Config
	dbos    dbos.Context
	logger  *slog.Logger
	pool    *pgxpool.Pool
	source  *dbos.DataSource
}

// New connects to the database, creates the peer's tables if missing, and
// launches DBOS on the same pool, which creates and migrates DBOS's system
// tables on first use and recovers the workflows a previous run left
// unfinished. ctx bounds the start only: the peer runs until Close. A nil
// config is rejected for want of a DatabaseURL.
func New(ctx context.Context, config *Config) (*Peer, error) {
	config = config.withDefaults()
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("dbospeer: %w", err)
	}
	start := time.Now()
	poolConfig, err := pgxpool.ParseConfig(config.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("dbospeer: parsing DatabaseURL: %w", err)
	}
	poolConfig.MaxConns = int32(config.PoolMaxConns)
	poolConfig.ConnConfig.Tracer = config.Tracer
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("dbospeer: opening pool: %w", err)
	}
	p := &Peer{config: config, logger: config.Logger, pool: pool}
	if err := p.launch(ctx); err != nil {
		if p.dbos != nil {
			_ = dbos.Shutdown(p.dbos, shutdownTimeoutDefault)
		}
		pool.Close()
		return nil, fmt.Errorf("dbospeer: %w", err)
	}
	p.logger.InfoContext(ctx, "dbospeer: started", slog.Int("pool_max_conns", config.PoolMaxConns),
		slog.String("schema", Schema), slog.String("system_schema", SystemSchema), slog.Duration("startup", time.Since(start)))
	return p, nil
}

// launch creates the peer's tables, then DBOS's context, data source and
// workflow, and launches DBOS.
func (p *Peer) launch(ctx context.Context) error {
	if err := createSchema(ctx, p.pool); err != nil {
		return err
	}
	// DBOS's context lives until Close, not until ctx is done.
	dbosCtx, err := dbos.NewContext(context.WithoutCancel(ctx), dbos.Config{
		AppName:        "dbospeer",
		DatabaseSchema: SystemSchema,
		Logger:         p.logger,
		SystemDBPool:   p.pool,
	})
	if err != nil {
		return fmt.Errorf("creating DBOS context: %w", err)
	}
	p.dbos = dbosCtx
	// The system database's own pool: each transaction commits with its
	// checkpoint, in one database transaction.
	if p.source, err = dbos.NewDataSource(dbosCtx, p.pool, dbos.WithDataSourceName(Schema)); err != nil {
		return fmt.Errorf("creating DBOS data source: %w", err)
	}
	dbos.RegisterWorkflow(dbosCtx, p.rideWorkflow, dbos.WithWorkflowName(workflowName))
	if err := dbos.Launch(dbosCtx); err != nil {
		return fmt.Errorf("launching DBOS: %w", err)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = p.config.PoolMaxConns // a connection per request at work
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: StripeTimeoutDefault, Transport: transport},
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(0), // the charge's step retries, with the same key
		URL:               stripe.String(p.config.StripeURL),
	})
	p.charges = &charge.Client{B: backend, Key: p.config.StripeKey}
	return nil
}

// Handler serves POST /rides.
func (p *Peer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rides", p.createRide)
	return mux
}

// Close shuts DBOS down, letting the workflows in flight finish until ctx's
// deadline (or for 10 seconds), and closes the pool.
func (p *Peer) Close(ctx context.Context) error {
	timeout := shutdownTimeoutDefault
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	err := dbos.Shutdown(p.dbos, timeout)
	p.pool.Close()
	if err != nil {
		return fmt.Errorf("dbospeer: shutting DBOS down: %w", err)
	}
	p.logger.InfoContext(ctx, "dbospeer: stopped")
	return nil
}
