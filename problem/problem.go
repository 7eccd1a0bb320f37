// Package problem is RFC 9457 Problem Details: the one shape of every error
// body the API sends, whether it is written on the spot or stored on an
// idempotency key and replayed.
package problem

import (
	"net/http"
)

// ContentType is the media type of a problem body.
const ContentType = "application/problem+json"

// TypeBase prefixes every problem type; the README documents each one under
// the same anchor.
const TypeBase = "https://github.com/rocketrides/rocketrides#problem-"

// Details is a problem body. A problem stored on an idempotency key comes
// back from jsonb with its members in the database's order; first response
// and replays still carry the same bytes.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// New returns a problem of the given kind (a short slug such as
// "card-declined"), titled after the HTTP status.
func New(status int, kind, detail string) *Details {
	return &Details{
		Type:   TypeBase + kind,
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	}
}

// Error makes a Details usable as an error, so a handler can return one.
func (d *Details) Error() string {
	return d.Title + ": " + d.Detail
}
