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
	// AmountRefunded is how much of Amount has been refunded so far.
	AmountRefunded int64
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
	// Refunds is left out unless the request asks to expand it: since
	// API version 2022-11-15, Stripe no longer includes it by default.
	Refunds *listObject[refundObject] `json:"refunds,omitempty"`
	Status  string                    `json:"status"`
}

func (c Charge) listID() string     { return c.ID }
func (c Charge) listParent() string { return c.Customer }

func (c Charge) object() chargeObject {
	object := chargeObject{
		ID:             c.ID,
		Object:         "charge",
		Amount:         c.Amount,
		AmountRefunded: c.AmountRefunded,
		Created:        c.Created.Unix(),
		Currency:       c.Currency,
		Customer:       c.Customer,
		Description:    nullable(c.Description),
		Metadata:       c.Metadata,
		Refunded:       c.AmountRefunded == c.Amount,
		Status:         c.Status,
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
	s.serveCreate(w, r, s.createCharge)
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

// handleGetCharge serves GET /v1/charges/{id}. Its refunds are included
// if the request asks to expand them (expand[]=refunds), as on Stripe.
func (s *Server) handleGetCharge(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)

	form, err := parseForm(r)
	if err != nil {
		send(w, err.response())
		return
	}
	expandRefunds, err := parseExpand(form, "refunds")
	if err != nil {
		send(w, err.response())
		return
	}
	id := r.PathValue("id")
	charge, ok := s.store.charge(id)
	if !ok {
		send(w, noSuch(http.StatusNotFound, "charge", "id", id).response())
		return
	}
	object := charge.object()
	if expandRefunds {
		object.Refunds = chargeRefunds(charge.ID, s.store.newestRefunds())
	}
	send(w, encode(http.StatusOK, object))
}

// handleListCharges serves GET /v1/charges.
func (s *Server) handleListCharges(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)
	sendList(w, r, "charge", "customer", s.store.newestCharges(), Charge.object)
}
