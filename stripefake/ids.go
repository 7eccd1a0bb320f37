package stripefake

import "math/rand/v2"

const alphanumerics = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Lengths of the random part of ids, as in Stripe's own ids.
const (
	customerIDLength = 14
	chargeIDLength   = 24
	refundIDLength   = 24
	cardIDLength     = 24
	requestIDLength  = 14
)

// newID returns prefix followed by n random alphanumerics, like Stripe's
// ids ("cus_NffrFeUfNV2Hib").
//
// Ids are drawn from an unseeded source on purpose: unlike injected
// faults, they need not be reproducible, and a fake restarted in a local
// run must not hand out ids that an earlier run already gave to other
// objects.
func newID(prefix string, n int) string {
	id := make([]byte, len(prefix), len(prefix)+n)
	copy(id, prefix)
	for range n {
		id = append(id, alphanumerics[rand.IntN(len(alphanumerics))])
	}
	return string(id)
}
