package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/rocketrides/rocketrides/db"
)

// Report is what an inspection found. Its JSON is the `--json` output of
// `rocketrides inspect`; absent parts are null, empty lists [].
type Report struct {
	// User is the key's or the ride's user.
	User *db.User `json:"user"`

	// Key is the idempotency key; nil for a ride whose key the reaper
	// deleted.
	Key *Key `json:"idempotency_key"`

	// Ride is the ride the key created or cancelled; nil for a key that
	// has none (yet).
	Ride *Ride `json:"ride"`

	// Cancellation is the ride's cancellation: a claim while its
	// CancelledAt is nil.
	Cancellation *db.RideCancellation `json:"cancellation"`

	// Charge is the ride's charge as Stripe has it now.
	Charge *Charge `json:"stripe_charge"`

	// Refunds are the charge's refunds as Stripe has them, newest first.
	Refunds []*Refund `json:"stripe_refunds"`

	// StripeError says why Stripe's part is missing or incomplete.
	StripeError string `json:"stripe_error,omitempty"`

	// AuditRecords are the ride's, oldest first.
	AuditRecords []*db.AuditRecord `json:"audit_records"`

	// StagedJobs are the ride's jobs not yet moved into River.
	StagedJobs []*db.StagedJob `json:"staged_jobs"`

	// RiverJobs are the ride's jobs in River, oldest first.
	RiverJobs []*RiverJob `json:"river_jobs"`
}

// Key is an idempotency key as a report shows it.
type Key struct {
	*db.IdempotencyKey

	// LockAge is how long the key has been locked, by the database's
	// clock; zero when unlocked.
	LockAge time.Duration `json:"-"`

	// LockAgeSeconds is LockAge in seconds, for scripts.
	LockAgeSeconds float64 `json:"lock_age_seconds"`

	// LockLive is whether the lock holds: younger than the lock timeout.
	LockLive bool `json:"lock_live"`
}

func newKey(key *db.IdempotencyKey, lockLive bool, now time.Time) *Key {
	k := &Key{IdempotencyKey: key, LockLive: lockLive}
	if key.LockedAt != nil {
		k.LockAge = now.Sub(*key.LockedAt)
		k.LockAgeSeconds = k.LockAge.Seconds()
	}
	return k
}

// Ride is a ride with its status.
type Ride struct {
	*db.Ride

	// Status is rides.RideStatus's: one of the rides.Status constants.
	Status string `json:"status"`
}

// How a report's charge was found.
const (
	// ChargeFoundByRide: the ride records the charge's id.
	ChargeFoundByRide = "ride"
	// ChargeFoundByMetadata: the ride records no charge, and Stripe has
	// one whose metadata names the ride (a charge whose answer was lost).
	ChargeFoundByMetadata = "metadata"
)

// Charge is a Stripe charge as a report shows it.
type Charge struct {
	ID             string            `json:"id"`
	Amount         int64             `json:"amount"`
	AmountRefunded int64             `json:"amount_refunded"`
	Created        time.Time         `json:"created"`
	Currency       string            `json:"currency"`
	FailureCode    string            `json:"failure_code,omitempty"`
	FailureMessage string            `json:"failure_message,omitempty"`
	FoundBy        string            `json:"found_by"`
	Metadata       map[string]string `json:"metadata"`
	Refunded       bool              `json:"refunded"`
	Status         string            `json:"status"`
}

func newCharge(c *stripe.Charge, foundBy string) *Charge {
	return &Charge{
		ID: c.ID, Amount: c.Amount, AmountRefunded: c.AmountRefunded, Created: time.Unix(c.Created, 0).UTC(),
		Currency: string(c.Currency), FailureCode: c.FailureCode, FailureMessage: c.FailureMessage, FoundBy: foundBy,
		Metadata: c.Metadata, Refunded: c.Refunded, Status: string(c.Status),
	}
}

// Refund is a Stripe refund as a report shows it.
type Refund struct {
	ID       string            `json:"id"`
	Amount   int64             `json:"amount"`
	Created  time.Time         `json:"created"`
	Currency string            `json:"currency"`
	Metadata map[string]string `json:"metadata"`
	Reason   string            `json:"reason,omitempty"`
	Status   string            `json:"status"`
}

func newRefund(r *stripe.Refund) *Refund {
	return &Refund{
		ID: r.ID, Amount: r.Amount, Created: time.Unix(r.Created, 0).UTC(), Currency: string(r.Currency),
		Metadata: r.Metadata, Reason: string(r.Reason), Status: string(r.Status),
	}
}

// RiverJob is a River job as a report shows it.
type RiverJob struct {
	ID          int64           `json:"id"`
	Args        json.RawMessage `json:"args"`
	Attempt     int             `json:"attempt"`
	CreatedAt   time.Time       `json:"created_at"`
	FinalizedAt *time.Time      `json:"finalized_at"`
	Kind        string          `json:"kind"`
	LastError   string          `json:"last_error,omitempty"`
	MaxAttempts int             `json:"max_attempts"`
	Queue       string          `json:"queue"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	State       string          `json:"state"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	encoder := json.NewEncoder(w)
	encoder.SetIndent("", "  ")
	return encoder.Encode(r)
}

// WriteText writes the report as blocks a person reads: the key, the ride,
// Stripe, the audit records, the jobs.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	field := func(name, format string, args ...any) { line("  %s\t%s", name, fmt.Sprintf(format, args...)) }

	if k := r.Key; k != nil {
		line("idempotency key %d %q of %s", k.ID, k.IdempotencyKey.IdempotencyKey, r.userName())
		field("workflow", "%s", k.Workflow)
		field("request", "%s %s %s", k.RequestMethod, k.RequestPath, k.RequestParams)
		field("recovery point", "%s", k.RecoveryPoint)
		field("lock", "%s", k.lock())
		field("created", "%s", stamp(k.CreatedAt))
		field("last run", "%s", stamp(k.LastRunAt))
		field("run count", "%d", k.RunCount)
		if k.ResponseCode != nil {
			field("response", "%d %s", *k.ResponseCode, k.ResponseBody)
		} else {
			field("response", "none stored (unfinished)")
		}
		field("stripe key", "rocket-rides-%s", k.StripeIdempotencyKey)
	}
	if ride := r.Ride; ride != nil {
		if r.Key == nil {
			line("idempotency key: gone (deleted by the reaper)")
		}
		line("")
		line("ride %d of %s", ride.ID, r.userName())
		field("status", "%s", ride.Status)
		field("created", "%s", stamp(ride.CreatedAt))
		field("route", "(%g, %g) to (%g, %g)", ride.OriginLat, ride.OriginLon, ride.TargetLat, ride.TargetLon)
		field("charge", "%s", orNone(ride.StripeChargeID))
		if c := r.Cancellation; c != nil {
			state := "claimed, refund not yet recorded"
			if c.CancelledAt != nil {
				state = "cancelled " + stamp(*c.CancelledAt) + ", refund " + orNone(c.StripeRefundID)
			}
			field("cancellation", "%s (key %s, reason %q)", state, orNoneInt(c.IdempotencyKeyID), orEmpty(c.Reason))
		} else {
			field("cancellation", "none")
		}

		line("")
		switch c := r.Charge; {
		case r.StripeError != "" && c == nil:
			line("stripe: %s", r.StripeError)
		case c == nil:
			line("stripe charge: none found for this ride")
		default:
			line("stripe charge %s (found by %s)", c.ID, c.FoundBy)
			field("status", "%s", c.Status)
			field("amount", "%d %s, refunded %d", c.Amount, c.Currency, c.AmountRefunded)
			field("created", "%s", stamp(c.Created))
			if c.FailureCode != "" {
				field("failure", "%s: %s", c.FailureCode, c.FailureMessage)
			}
			field("metadata", "%s", metadata(c.Metadata))
			if len(r.Refunds) == 0 {
				field("refunds", "none")
			}
			for _, refund := range r.Refunds {
				field("refund", "%s %s %d %s %s %s", refund.ID, refund.Status, refund.Amount, refund.Currency, stamp(refund.Created), metadata(refund.Metadata))
			}
			if r.StripeError != "" {
				field("error", "%s", r.StripeError)
			}
		}

		line("")
		line("audit records: %d", len(r.AuditRecords))
		for _, a := range r.AuditRecords {
			field(a.Action, "%s from %s %s", stamp(a.CreatedAt), a.OriginIP, a.Data)
		}
		line("staged jobs: %d", len(r.StagedJobs))
		for _, j := range r.StagedJobs {
			field(j.JobName, "staged %s %s", stamp(j.CreatedAt), j.JobArgs)
		}
		line("river jobs: %d", len(r.RiverJobs))
		for _, j := range r.RiverJobs {
			state := j.State
			if j.FinalizedAt != nil {
				state += " " + stamp(*j.FinalizedAt)
			}
			detail := ""
			if j.LastError != "" {
				detail = " last error: " + j.LastError
			}
			field(j.Kind, "job %d %s attempt %d/%d %s%s", j.ID, state, j.Attempt, j.MaxAttempts, j.Args, detail)
		}
	} else if r.Key != nil {
		line("")
		line("ride: none (the key's request made none)")
	}
	return tw.Flush()
}

// lock describes the key's lock.
func (k *Key) lock() string {
	if k.LockedAt == nil {
		return "unlocked"
	}
	state := "stale: another request may take it over"
	if k.LockLive {
		state = "live: held by a request"
	}
	return fmt.Sprintf("locked %s ago (%s)", k.LockAge.Round(time.Millisecond), state)
}

func (r *Report) userName() string {
	if r.User == nil {
		return "an unknown user"
	}
	return fmt.Sprintf("%s (user %d)", r.User.Email, r.User.ID)
}

func stamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

func metadata(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k])
	}
	return b.String()
}

func orNone(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNoneInt(n *int64) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprint(*n)
}
