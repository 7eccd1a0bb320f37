package stripefake

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// response is a complete answer to a request: what a handler produces,
// and what an idempotency key keeps to replay.
type response struct {
	status int
	body   []byte
}

// encode renders v as Stripe does: indented JSON.
func encode(status int, v any) response {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only this package's own types are encoded, and they all marshal.
		panic(fmt.Sprintf("stripefake: encode %T: %v", v, err))
	}
	return response{status: status, body: append(body, '\n')}
}

// send writes resp to w.
func send(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.status)
	// An error here means the client has gone; there is no one left to tell.
	_, _ = w.Write(resp.body)
}

// nullable returns nil for "", so that an unset string field encodes as
// null, as in Stripe's objects.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
