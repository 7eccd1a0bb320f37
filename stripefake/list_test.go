package stripefake_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/rocketrides/rocketrides/stripefake"
)

// createCharges creates n charges on customerID, one after the other, and
// returns their ids in creation order.
func createCharges(t *testing.T, sc *client.API, customerID string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		charge, err := sc.Charges.New(chargeParams(customerID, int64(100+i), ""))
		require.NoError(t, err)
		ids[i] = charge.ID
	}
	return ids
}

// newestFirst returns ids reversed: the order in which Stripe lists them.
func newestFirst(ids []string) []string {
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	return reversed
}

// listIDs lists charges with params through stripe-go's iterator, which
// fetches page after page, and returns their ids and how many pages it
// fetched.
func listIDs(t *testing.T, sc *client.API, params *stripe.ChargeListParams) ([]string, int) {
	t.Helper()
	var ids []string
	pages := make(map[*stripe.ChargeList]bool)
	iter := sc.Charges.List(params)
	for iter.Next() {
		ids = append(ids, iter.Charge().ID)
		pages[iter.ChargeList()] = true
	}
	require.NoError(t, iter.Err())
	return ids, len(pages)
}

func TestListPaginatesNewestFirst(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	created := createCharges(t, sc, customerID, 25)

	params := &stripe.ChargeListParams{}
	params.Limit = stripe.Int64(10)
	listed, pages := listIDs(t, sc, params)

	require.Equal(t, newestFirst(created), listed, "all 25, each once, newest first")
	require.Equal(t, 3, pages)
}

func TestListFiltersByCustomer(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	alice := newCustomer(t, sc, "tok_visa")
	bob := newCustomer(t, sc, "tok_visa")
	var aliceCharges []string
	for range 3 {
		aliceCharges = append(aliceCharges, createCharges(t, sc, alice, 2)...)
		createCharges(t, sc, bob, 1)
	}

	params := &stripe.ChargeListParams{Customer: stripe.String(alice)}
	params.Limit = stripe.Int64(4)
	listed, pages := listIDs(t, sc, params)

	require.Equal(t, newestFirst(aliceCharges), listed)
	require.Equal(t, 2, pages)
}

func TestListOnePage(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	created := createCharges(t, sc, customerID, 12)

	params := &stripe.ChargeListParams{}
	params.Single = true
	iter := sc.Charges.List(params)
	var listed []string
	for iter.Next() {
		listed = append(listed, iter.Charge().ID)
	}

	require.NoError(t, iter.Err())
	require.Equal(t, newestFirst(created)[:10], listed, "the default limit is 10")
	page := iter.ChargeList()
	require.True(t, page.HasMore)
	require.Equal(t, "/v1/charges", page.URL)
}

func TestListStartingAfter(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	newest := newestFirst(createCharges(t, sc, customerID, 5))

	params := &stripe.ChargeListParams{}
	params.StartingAfter = stripe.String(newest[1])
	listed, _ := listIDs(t, sc, params)

	require.Equal(t, newest[2:], listed)
}

func TestListEndingBefore(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})
	customerID := newCustomer(t, sc, "tok_visa")
	newest := newestFirst(createCharges(t, sc, customerID, 7))

	params := &stripe.ChargeListParams{}
	params.EndingBefore = stripe.String(newest[5])
	params.Limit = stripe.Int64(2)
	listed, pages := listIDs(t, sc, params)

	// Paging backwards, stripe-go yields the charges nearest the cursor
	// first: from older to newer.
	require.Equal(t, []string{newest[4], newest[3], newest[2], newest[1], newest[0]}, listed)
	require.Equal(t, 3, pages)
}

func TestListEmpty(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	listed, _ := listIDs(t, sc, &stripe.ChargeListParams{})

	require.Empty(t, listed)
}

func TestListRejectsInvalidQueries(t *testing.T) {
	t.Parallel()
	_, sc := newFake(t, stripefake.Config{})

	tests := []struct {
		name      string
		params    func() *stripe.ChargeListParams
		wantParam string
	}{
		{"limit above 100", func() *stripe.ChargeListParams {
			p := &stripe.ChargeListParams{}
			p.Limit = stripe.Int64(101)
			return p
		}, "limit"},
		{"limit of 0", func() *stripe.ChargeListParams {
			p := &stripe.ChargeListParams{}
			p.Limit = stripe.Int64(0)
			return p
		}, "limit"},
		{"unknown cursor", func() *stripe.ChargeListParams {
			p := &stripe.ChargeListParams{}
			p.StartingAfter = stripe.String("ch_nothing")
			return p
		}, "starting_after"},
		{"both cursors", func() *stripe.ChargeListParams {
			p := &stripe.ChargeListParams{}
			p.StartingAfter = stripe.String("ch_a")
			p.EndingBefore = stripe.String("ch_b")
			return p
		}, "starting_after"},
		{"unsupported filter", func() *stripe.ChargeListParams {
			return &stripe.ChargeListParams{Created: stripe.Int64(1700000000)}
		}, "created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iter := sc.Charges.List(tt.params())

			require.False(t, iter.Next())
			stripeErr := requireStripeError(t, iter.Err(), http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
			require.Equal(t, tt.wantParam, stripeErr.Param)
		})
	}
}
