package stripefake

import (
	"net/http"
	"net/url"
	"time"
)

// Stripe's test card tokens that the fake knows.
const (
	// tokenVisa is a card that can be charged.
	tokenVisa = "tok_visa"
	// tokenChargeCustomerFail is a card that can be attached to a
	// customer, but every charge on which is declined.
	tokenChargeCustomerFail = "tok_chargeCustomerFail"
)

// customer is a customer the fake has created.
type customer struct {
	ID          string
	Email       string
	Name        string
	Description string
	Metadata    map[string]string
	Created     time.Time
	// DefaultSource is the id of the customer's card, or "" if it has none.
	DefaultSource string
	// Declines reports whether every charge on the customer is declined.
	Declines bool
}

// customerObject is a customer as Stripe renders it.
type customerObject struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Balance       int64             `json:"balance"`
	Created       int64             `json:"created"`
	DefaultSource *string           `json:"default_source"`
	Delinquent    bool              `json:"delinquent"`
	Description   *string           `json:"description"`
	Email         *string           `json:"email"`
	Livemode      bool              `json:"livemode"`
	Metadata      map[string]string `json:"metadata"`
	Name          *string           `json:"name"`
}

func (c customer) object() customerObject {
	return customerObject{
		ID:            c.ID,
		Object:        "customer",
		Created:       c.Created.Unix(),
		DefaultSource: nullable(c.DefaultSource),
		Description:   nullable(c.Description),
		Email:         nullable(c.Email),
		Metadata:      c.Metadata,
		Name:          nullable(c.Name),
	}
}

// handleCreateCustomer serves POST /v1/customers.
func (s *Server) handleCreateCustomer(w http.ResponseWriter, r *http.Request) {
	form, claim, ok := s.beginWrite(w, r)
	if !ok {
		return
	}
	defer claim.release()

	outcome, rejection := s.createCustomer(form)
	if rejection != nil {
		send(w, rejection.response())
		return
	}
	claim.remember(outcome)
	send(w, outcome)
}

// createCustomer validates a customer creation request and, if it is
// valid, creates the customer.
func (s *Server) createCustomer(form url.Values) (response, *stripeError) {
	if err := checkParams(form, "description", "email", metadataParam, "name", "source"); err != nil {
		return response{}, err
	}
	c := customer{
		ID:          newID("cus_", customerIDLength),
		Email:       form.Get("email"),
		Name:        form.Get("name"),
		Description: form.Get("description"),
		Metadata:    metadata(form),
	}
	switch source := form.Get("source"); source {
	case "":
	case tokenVisa:
		c.DefaultSource = newID("card_", cardIDLength)
	case tokenChargeCustomerFail:
		c.DefaultSource = newID("card_", cardIDLength)
		c.Declines = true
	default:
		return response{}, noSuch(http.StatusBadRequest, "token", "source", source)
	}
	c = s.store.addCustomer(c)
	return encode(http.StatusOK, c.object()), nil
}

// handleGetCustomer serves GET /v1/customers/{id}.
func (s *Server) handleGetCustomer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, ok := s.store.customer(id)
	if !ok {
		send(w, noSuch(http.StatusNotFound, "customer", "id", id).response())
		return
	}
	send(w, encode(http.StatusOK, c.object()))
}
