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

// listed is an object that a list endpoint pages through.
type listed interface {
	// listID is the object's id, which the cursors of a list name.
	listID() string
	// listParent is the id that the list's filter parameter keeps: a
	// charge's customer, a refund's charge.
	listParent() string
}

// listQuery is a request for one page of a list of objects.
type listQuery struct {
	// object is what the list holds, such as "charge", for error messages.
	object string
	// parent, if set, keeps only the objects whose listParent it is.
	parent string
	limit  int
	// startingAfter, if set, asks for the page after that object.
	startingAfter string
	// endingBefore, if set, asks for the page before that object.
	endingBefore string
}

// parseListQuery parses the parameters of a list of object, whose filter
// parameter (customer for charges, charge for refunds) is parentParam.
func parseListQuery(form url.Values, object, parentParam string) (listQuery, *stripeError) {
	if err := checkParams(form, parentParam, "ending_before", "limit", "starting_after"); err != nil {
		return listQuery{}, err
	}
	limit, err := optionalInt(form, "limit", defaultListLimit, 1, maxListLimit)
	if err != nil {
		return listQuery{}, err
	}
	query := listQuery{
		object:        object,
		parent:        form.Get(parentParam),
		limit:         int(limit),
		startingAfter: form.Get("starting_after"),
		endingBefore:  form.Get("ending_before"),
	}
	if query.startingAfter != "" && query.endingBefore != "" {
		return listQuery{}, exclusiveParameters("starting_after", "ending_before")
	}
	return query, nil
}

// listPage picks the page that q asks for from newest, all objects newest
// first, the order in which Stripe lists them. It also reports whether
// more objects lie beyond the page in the direction of paging: older ones
// after it, or, with endingBefore, newer ones before it.
//
// The cursor object is looked for among all objects, so it need not have
// q's parent.
func listPage[T listed](q listQuery, newest []T) (page []T, hasMore bool, err *stripeError) {
	if q.endingBefore != "" {
		i := slices.IndexFunc(newest, hasID[T](q.endingBefore))
		if i < 0 {
			return nil, false, noSuch(http.StatusBadRequest, q.object, "ending_before", q.endingBefore)
		}
		before := matching(q, newest[:i])
		start := max(0, len(before)-q.limit)
		return before[start:], start > 0, nil
	}

	after := newest
	if q.startingAfter != "" {
		i := slices.IndexFunc(newest, hasID[T](q.startingAfter))
		if i < 0 {
			return nil, false, noSuch(http.StatusBadRequest, q.object, "starting_after", q.startingAfter)
		}
		after = newest[i+1:]
	}
	after = matching(q, after)
	end := min(q.limit, len(after))
	return after[:end], end < len(after), nil
}

// matching returns the objects that q's filter keeps, in the same order.
func matching[T listed](q listQuery, objects []T) []T {
	if q.parent == "" {
		return objects
	}
	var kept []T
	for _, o := range objects {
		if o.listParent() == q.parent {
			kept = append(kept, o)
		}
	}
	return kept
}

func hasID[T listed](id string) func(T) bool {
	return func(o T) bool { return o.listID() == id }
}

// sendList answers a list request with the page of newest, all objects
// newest first, that it asks for, each rendered by render.
func sendList[T listed, O any](w http.ResponseWriter, r *http.Request, object, parentParam string, newest []T, render func(T) O) {
	form, err := parseForm(r)
	if err != nil {
		send(w, err.response())
		return
	}
	query, err := parseListQuery(form, object, parentParam)
	if err != nil {
		send(w, err.response())
		return
	}
	page, hasMore, err := listPage(query, newest)
	if err != nil {
		send(w, err.response())
		return
	}

	objects := make([]O, len(page))
	for i, o := range page {
		objects[i] = render(o)
	}
	send(w, encode(http.StatusOK, listObject[O]{
		Object:  "list",
		URL:     r.URL.Path,
		HasMore: hasMore,
		Data:    objects,
	}))
}
