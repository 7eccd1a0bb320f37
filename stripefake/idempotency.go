package stripefake

import (
	"net/http"
	"net/url"
	"sync"
)

// idempotencyKeys implements Stripe's rules for the Idempotency-Key
// header of POST requests:
//
//   - The first request with a key claims it. While that request is
//     being processed, other requests with the key get 409
//     idempotency_key_in_use.
//   - Once a request has been carried out, its response is kept under the
//     key, and a later request with the key and the same parameters gets
//     that response again (a replay), while one with other parameters (or
//     for another endpoint) gets 400 idempotency_error.
//   - A request that is rejected before it is carried out (it fails
//     validation, or an injected failure strikes first) keeps nothing, so
//     the key can be used again.
//
// Keys never expire; Stripe forgets them after 24 hours.
type idempotencyKeys struct {
	mu      sync.Mutex
	entries map[string]*keyEntry
}

// keyEntry is what is known about one idempotency key.
type keyEntry struct {
	// fingerprint identifies the request that claimed the key: its
	// method, path and parameters.
	fingerprint string
	// requestID is that request's Request-Id.
	requestID string
	// saved is that request's response, or nil while it is being processed.
	saved *response
}

// keyClaim is a request's hold on its idempotency key. The zero keyClaim,
// for a request without a key, holds nothing.
type keyClaim struct {
	keys  *idempotencyKeys
	key   string
	entry *keyEntry
}

func newIdempotencyKeys() *idempotencyKeys {
	return &idempotencyKeys{entries: make(map[string]*keyEntry)}
}

// requestFingerprint identifies a request, for comparison with a later
// one that uses the same idempotency key. form.Encode sorts by parameter
// name, so the order in which parameters are sent does not matter.
func requestFingerprint(r *http.Request, form url.Values) string {
	return r.Method + " " + r.URL.Path + "?" + form.Encode()
}

// claim claims key for the request identified by fingerprint and
// requestID. If the key was already used, claim returns instead either
// the entry whose response to replay or an idempotency error.
func (k *idempotencyKeys) claim(key, fingerprint, requestID string) (*keyClaim, *keyEntry, *stripeError) {
	if key == "" {
		return &keyClaim{}, nil, nil
	}

	k.mu.Lock()
	defer k.mu.Unlock()

	if entry, used := k.entries[key]; used {
		switch {
		case entry.fingerprint != fingerprint:
			return nil, nil, idempotencyKeyReused(key)
		case entry.saved == nil:
			return nil, nil, idempotencyKeyInUse(key)
		default:
			replay := *entry
			return nil, &replay, nil
		}
	}

	entry := &keyEntry{fingerprint: fingerprint, requestID: requestID}
	k.entries[key] = entry
	return &keyClaim{keys: k, key: key, entry: entry}, nil, nil
}

// remember keeps resp as the response to replay for the claimed key.
func (c *keyClaim) remember(resp response) {
	if c.keys == nil {
		return
	}
	c.keys.mu.Lock()
	defer c.keys.mu.Unlock()
	c.entry.saved = &resp
}

// release gives the key up unless a response was remembered for it, so
// that a request that was not carried out does not use up its key.
func (c *keyClaim) release() {
	if c.keys == nil {
		return
	}
	c.keys.mu.Lock()
	defer c.keys.mu.Unlock()
	if c.entry.saved == nil {
		delete(c.keys.entries, c.key)
	}
}
