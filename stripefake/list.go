package stripefake

import (
	"net/http"
	"net/url"
	"slices"
)

// Page sizes of list requests, as on Stripe.
const (
	defaultListLimit = 10
	maxListLimit     = 100
)

// listObject is Stripe's list object: one page of a list.
type listObject[T any] struct {
	Object  string `json:"object"`
	URL     string `json:"url"`
	HasMore bool   `json:"has_more"`
	Data    []T    `json:"data"`
}

// listQuery is a request for one page of charges.
type listQuery struct {
	// customer, if set, keeps only the charges on that customer.
	customer string
	limit    int
	// startingAfter, if set, asks for the page after that charge.
	startingAfter string
	// endingBefore, if set, asks for the page before that charge.
	endingBefore string
}

func parseListQuery(form url.Values) (listQuery, *stripeError) {
	if err := checkParams(form, "customer", "ending_before", "limit", "starting_after"); err != nil {
		return listQuery{}, err
	}
	limit, err := optionalInt(form, "limit", defaultListLimit, 1, maxListLimit)
	if err != nil {
		return listQuery{}, err
	}
	query := listQuery{
		customer:      form.Get("customer"),
		limit:         int(limit),
		startingAfter: form.Get("starting_after"),
		endingBefore:  form.Get("ending_before"),
	}
	if query.startingAfter != "" && query.endingBefore != "" {
		return listQuery{}, exclusiveParameters("starting_after", "ending_before")
	}
	return query, nil
}

// page picks the page that q asks for from newest, all charges newest
// first, the order in which Stripe lists them. It also reports whether
// more charges lie beyond the page in the direction of paging: older
// ones after it, or, with endingBefore, newer ones before it.
//
// The cursor charge is looked for among all charges, so it need not be
// on q's customer.
func (q listQuery) page(newest []Charge) (page []Charge, hasMore bool, err *stripeError) {
	if q.endingBefore != "" {
		i := slices.IndexFunc(newest, hasID(q.endingBefore))
		if i < 0 {
			return nil, false, noSuch(http.StatusBadRequest, "charge", "ending_before", q.endingBefore)
		}
		before := q.matching(newest[:i])
		start := max(0, len(before)-q.limit)
		return before[start:], start > 0, nil
	}

	after := newest
	if q.startingAfter != "" {
		i := slices.IndexFunc(newest, hasID(q.startingAfter))
		if i < 0 {
			return nil, false, noSuch(http.StatusBadRequest, "charge", "starting_after", q.startingAfter)
		}
		after = newest[i+1:]
	}
	after = q.matching(after)
	end := min(q.limit, len(after))
	return after[:end], end < len(after), nil
}

// matching returns the charges that q's filter keeps, in the same order.
func (q listQuery) matching(charges []Charge) []Charge {
	if q.customer == "" {
		return charges
	}
	var kept []Charge
	for _, c := range charges {
		if c.Customer == q.customer {
			kept = append(kept, c)
		}
	}
	return kept
}

func hasID(id string) func(Charge) bool {
	return func(c Charge) bool { return c.ID == id }
}
