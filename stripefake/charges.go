package stripefake

import (
	"net/http"
	"net/url"
	"time"
)

// Charge statuses, as in Stripe's charge object.
const (
	// ChargeSucceeded is the status of a charge that went through.
	ChargeSucceeded = "succeeded"
	// ChargeFailed is the status of a declined charge.
	ChargeFailed = "failed"
)

// Charge is a charge the fake has created, as reported by
// [Server.Charges]. Declined charges are charges too, with status
// [ChargeFailed], as on Stripe.
type Charge struct {
	// ID is the charge's id: "ch_" followed by 24 random alphanumerics.
	ID string
	// Amount is in the currency's smallest unit, such as cents.
	Amount int64
	// Currency is a lower-case three-letter ISO code, such as "usd".
	Currency string
	// Customer is the id of the customer charged.
	Customer    string
	Description string
	Metadata    map[string]string
	// Status is ChargeSucceeded or ChargeFailed.
	Status string
	// IdempotencyKey is the Idempotency-Key of the request that created
	// the charge, or "" if it had none.
	IdempotencyKey string
	Created        time.Time
}

// chargeObject is a charge as Stripe renders it.
type chargeObject struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Captured       bool              `json:"captured"`
	Created        int64             `json:"created"`
	Currency       string            `json:"currency"`
	Customer       string            `json:"customer"`
	Description    *string           `json:"description"`
	FailureCode    *string           `json:"failure_code"`
	FailureMessage *string           `json:"failure_message"`
	Livemode       bool              `json:"livemode"`
	Metadata       map[string]string `json:"metadata"`
	Paid           bool              `json:"paid"`
	Refunded       bool              `json:"refunded"`
	Status         string            `json:"status"`
}

func (c Charge) object() chargeObject {
	object := chargeObject{
		ID:          c.ID,
		Object:      "charge",
		Amount:      c.Amount,
		Created:     c.Created.Unix(),
		Currency:    c.Currency,
		Customer:    c.Customer,
		Description: nullable(c.Description),
		Metadata:    c.Metadata,
		Status:      c.Status,
	}
	if c.Status == ChargeSucceeded {
		object.AmountCaptured = c.Amount
		object.Captured = true
		object.Paid = true
	} else {
		object.FailureCode = nullable(cardDeclinedCode)
		object.FailureMessage = nullable(cardDeclinedMessage)
	}
	return object
}

// handleCreateCharge serves POST /v1/charges, with the latency and
// failures that the configuration asks for.
func (s *Server) handleCreateCharge(w http.ResponseWriter, r *http.Request) {
	s.chargeRequests.Add(1)
	form, claim, ok := s.beginWrite(w, r)
	if !ok {
		return
	}
	defer claim.release()

	// Stripe's processing time, during which the key stays claimed. It is
	// not cut short when the client gives up: neither is Stripe's.
	time.Sleep(s.config.Latency)

	fault := s.faults.next()
	if fault == failBefore {
		s.sendFault(w, r, fault)
		return
	}
	outcome, rejection := s.createCharge(form, claim.key)
	if rejection != nil {
		send(w, rejection.response())
		return
	}
	claim.remember(outcome)
	if fault == failAfter {
		s.sendFault(w, r, fault)
		return
	}
	send(w, outcome)
}

// createCharge validates a charge creation request and, if it is valid,
// charges the customer. A request that fails validation is rejected and
// changes nothing. A valid one creates a charge, which either succeeds
// (200 and the charge) or is declined (402 and a card_error naming the
// failed charge): both are outcomes that the idempotency key keeps.
func (s *Server) createCharge(form url.Values, idempotencyKey string) (response, *stripeError) {
	if err := checkParams(form, "amount", "currency", "customer", "description", metadataParam); err != nil {
		return response{}, err
	}
	amount, err := requiredAmount(form)
	if err != nil {
		return response{}, err
	}
	currency, err := requiredCurrency(form)
	if err != nil {
		return response{}, err
	}
	customerID, err := requiredString(form, "customer")
	if err != nil {
		return response{}, err
	}
	customer, ok := s.store.customer(customerID)
	if !ok {
		return response{}, noSuch(http.StatusBadRequest, "customer", "customer", customerID)
	}

	charge := s.store.addCharge(Charge{
		ID:             newID("ch_", chargeIDLength),
		Amount:         amount,
		Currency:       currency,
		Customer:       customer.ID,
		Description:    form.Get("description"),
		Metadata:       metadata(form),
		Status:         chargeStatus(customer),
		IdempotencyKey: idempotencyKey,
	})
	if charge.Status == ChargeFailed {
		return cardDeclined(charge.ID).response(), nil
	}
	return encode(http.StatusOK, charge.object()), nil
}

// chargeStatus is the status of a charge on c.
func chargeStatus(c customer) string {
	if c.Declines {
		return ChargeFailed
	}
	return ChargeSucceeded
}

// handleGetCharge serves GET /v1/charges/{id}.
func (s *Server) handleGetCharge(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)

	id := r.PathValue("id")
	charge, ok := s.store.charge(id)
	if !ok {
		send(w, noSuch(http.StatusNotFound, "charge", "id", id).response())
		return
	}
	send(w, encode(http.StatusOK, charge.object()))
}

// handleListCharges serves GET /v1/charges.
func (s *Server) handleListCharges(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)

	form, err := parseForm(r)
	if err != nil {
		send(w, err.response())
		return
	}
	query, err := parseListQuery(form)
	if err != nil {
		send(w, err.response())
		return
	}
	page, hasMore, err := query.page(s.store.newestCharges())
	if err != nil {
		send(w, err.response())
		return
	}

	objects := make([]chargeObject, len(page))
	for i, charge := range page {
		objects[i] = charge.object()
	}
	send(w, encode(http.StatusOK, listObject[chargeObject]{
		Object:  "list",
		URL:     r.URL.Path,
		HasMore: hasMore,
		Data:    objects,
	}))
}
