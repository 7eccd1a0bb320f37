package main

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbCounter is the pool's tracer. It counts the statements sent to the
// database (each one round trip once its statement is prepared, which pgx
// caches per connection) and the transactions begun, and it follows the
// connections in use at every acquire and release, not by sampling: the
// most at once, the connection time they add up to, and which request
// holds each, to catch a request that calls Stripe while it holds one.
type dbCounter struct {
	begins  atomic.Int64
	queries atomic.Int64

	mu       sync.Mutex
	connTime time.Duration // connections in use × time, since reset
	inUse    int32
	maxInUse int32
	since    time.Time // of the last change of inUse

	// owners maps a connection in use to the request holding it, and held
	// counts the connections each request holds (see withOwner).
	held   map[string]int
	owners map[*pgx.Conn]string

	// stripeCalls counts the Stripe calls since reset, and
	// stripeCallsHolding those whose request held a connection meanwhile.
	stripeCalls        int64
	stripeCallsHolding int64
}

// newDBCounter returns a counter with nothing counted.
func newDBCounter() *dbCounter {
	return &dbCounter{held: make(map[string]int), owners: make(map[*pgx.Conn]string), since: time.Now()}
}

// ownerKey is the context key of the request that a context serves.
type ownerKey struct{}

// withOwner returns ctx marked as serving owner's request. Each worker of
// the load generator sends as a user of its own, so the user's email
// identifies the one request it has in flight.
func withOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

// ownerOf returns the request that ctx serves, or "".
func ownerOf(ctx context.Context) string {
	owner, _ := ctx.Value(ownerKey{}).(string)
	return owner
}

var (
	_ pgx.QueryTracer       = (*dbCounter)(nil)
	_ pgxpool.AcquireTracer = (*dbCounter)(nil)
	_ pgxpool.ReleaseTracer = (*dbCounter)(nil)
)

// dbCounts are the counts since the last reset.
type dbCounts struct {
	// Begins is how many transactions were begun, retries included.
	Begins int64

	// ConnTime is the time that connections were in use, added up over
	// connections: by Little's law, divided by the requests it is the
	// connection time each request took.
	ConnTime time.Duration

	// MaxConns is the most connections that were in use at once.
	MaxConns int32

	// Queries is how many statements were sent, BEGIN and COMMIT included.
	Queries int64

	// StripeCalls is how many charges Stripe was asked for, and
	// StripeCallsHolding how many of them while their request held a
	// connection.
	StripeCalls        int64
	StripeCallsHolding int64
}

// add adds the counts of another run.
func (c *dbCounts) add(other dbCounts) {
	c.Begins += other.Begins
	c.ConnTime += other.ConnTime
	c.MaxConns = max(c.MaxConns, other.MaxConns)
	c.Queries += other.Queries
	c.StripeCalls += other.StripeCalls
	c.StripeCallsHolding += other.StripeCallsHolding
}

// reset starts new counts. The connections in use now are the new maximum
// so far.
func (c *dbCounter) reset() {
	c.begins.Store(0)
	c.queries.Store(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connTime = 0
	c.maxInUse = c.inUse
	c.since = time.Now()
	c.stripeCalls = 0
	c.stripeCallsHolding = 0
}

// counts returns the counts since the last reset.
func (c *dbCounter) counts() dbCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accrue(time.Now())
	return dbCounts{
		Begins:             c.begins.Load(),
		ConnTime:           c.connTime,
		MaxConns:           c.maxInUse,
		Queries:            c.queries.Load(),
		StripeCalls:        c.stripeCalls,
		StripeCallsHolding: c.stripeCallsHolding,
	}
}

// stripeCall counts a call to Stripe made by owner's request.
func (c *dbCounter) stripeCall(owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stripeCalls++
	if c.held[owner] > 0 {
		c.stripeCallsHolding++
	}
}

// accrue adds the connection time since the last change. c.mu is held.
func (c *dbCounter) accrue(now time.Time) {
	c.connTime += time.Duration(c.inUse) * now.Sub(c.since)
	c.since = now
}

// TraceQueryStart counts a statement, and a transaction if it is a BEGIN
// (pgx begins with "begin isolation level ...").
func (c *dbCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	if len(data.SQL) >= 5 && strings.EqualFold(data.SQL[:5], "begin") {
		c.begins.Add(1)
	}
	return ctx
}

// TraceQueryEnd does nothing.
func (c *dbCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceAcquireStart does nothing.
func (c *dbCounter) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return ctx
}

// TraceAcquireEnd counts a connection handed out, to the request that ctx
// serves.
func (c *dbCounter) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if data.Err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accrue(time.Now())
	c.inUse++
	c.maxInUse = max(c.maxInUse, c.inUse)
	if owner := ownerOf(ctx); owner != "" {
		c.owners[data.Conn] = owner
		c.held[owner]++
	}
}

// TraceRelease counts a connection given back.
func (c *dbCounter) TraceRelease(_ *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accrue(time.Now())
	c.inUse--
	if owner, ok := c.owners[data.Conn]; ok {
		delete(c.owners, data.Conn)
		c.held[owner]--
	}
}
