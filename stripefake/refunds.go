package stripefake

import (
	"net/http"
	"net/url"
	"slices"
	"time"
)

// RefundSucceeded is the status of a refund, as in Stripe's refund object.
// A refund of a card charge succeeds at once, on Stripe as here.
const RefundSucceeded = "succeeded"

// Refund is a refund the fake has created, as reported by
// [Server.Refunds].
type Refund struct {
	// ID is the refund's id: "re_" followed by 24 random alphanumerics.
	ID string
	// Charge is the id of the charge refunded.
	Charge string
	// Amount is in the currency's smallest unit, such as cents.
	Amount int64
	// Currency is the charge's.
	Currency string
	// Reason is "duplicate", "fraudulent", "requested_by_customer" or "".
	Reason   string
	Metadata map[string]string
	// Status is RefundSucceeded.
	Status string
	// IdempotencyKey is the Idempotency-Key of the request that created
	// the refund, or "" if it had none.
	IdempotencyKey string
	Created        time.Time
}

func (r Refund) listID() string     { return r.ID }
func (r Refund) listParent() string { return r.Charge }

// refundObject is a refund as Stripe renders it. The fake has no balance
// transactions, payment intents or transfers, so it leaves those out or
// sends them as null.
type refundObject struct {
	ID                     string            `json:"id"`
	Object                 string            `json:"object"`
	Amount                 int64             `json:"amount"`
	Charge                 string            `json:"charge"`
	Created                int64             `json:"created"`
	Currency               string            `json:"currency"`
	Metadata               map[string]string `json:"metadata"`
	PaymentIntent          *string           `json:"payment_intent"`
	Reason                 *string           `json:"reason"`
	ReceiptNumber          *string           `json:"receipt_number"`
	SourceTransferReversal *string           `json:"source_transfer_reversal"`
	Status                 string            `json:"status"`
	TransferReversal       *string           `json:"transfer_reversal"`
}

func (r Refund) object() refundObject {
	return refundObject{
		ID:       r.ID,
		Object:   "refund",
		Amount:   r.Amount,
		Charge:   r.Charge,
		Created:  r.Created.Unix(),
		Currency: r.Currency,
		Metadata: r.Metadata,
		Reason:   nullable(r.Reason),
		Status:   r.Status,
	}
}

// chargeRefunds is the refunds list of the charge chargeID, as an
// expanded charge carries it: its newest ten refunds, from newest, all
// refunds newest first.
func chargeRefunds(chargeID string, newest []Refund) *listObject[refundObject] {
	list := &listObject[refundObject]{
		Object: "list",
		URL:    "/v1/charges/" + chargeID + "/refunds",
		Data:   []refundObject{},
	}
	for _, refund := range newest {
		if refund.Charge != chargeID {
			continue
		}
		if len(list.Data) == defaultListLimit {
			list.HasMore = true
			break
		}
		list.Data = append(list.Data, refund.object())
	}
	return list
}

// handleCreateRefund serves POST /v1/refunds, with the latency and
// failures that the configuration asks for, as charges have them.
func (s *Server) handleCreateRefund(w http.ResponseWriter, r *http.Request) {
	s.refundRequests.Add(1)
	s.serveCreate(w, r, s.createRefund)
}

// createRefund validates a refund request and, if it is valid and the
// charge has something left to refund, refunds it: by the amount asked
// for, or else by all that remains. A rejected request changes nothing.
func (s *Server) createRefund(form url.Values, idempotencyKey string) (response, *stripeError) {
	if err := checkParams(form, "amount", "charge", "reason", metadataParam); err != nil {
		return response{}, err
	}
	chargeID, err := requiredString(form, "charge")
	if err != nil {
		return response{}, err
	}
	// Zero asks for all that remains.
	amount, err := optionalInt(form, "amount", 0, 1, 99_999_999)
	if err != nil {
		return response{}, err
	}
	reason := form.Get("reason")
	if reasons := []string{"duplicate", "fraudulent", "requested_by_customer"}; reason != "" && !slices.Contains(reasons, reason) {
		return response{}, invalidChoice("reason", reason, reasons)
	}

	refund, err := s.store.addRefund(chargeID, func(charge Charge) (Refund, *stripeError) {
		if charge.Status == ChargeFailed {
			return Refund{}, chargeNotRefundable(charge.ID)
		}
		unrefunded := charge.Amount - charge.AmountRefunded
		switch {
		case unrefunded == 0:
			return Refund{}, chargeAlreadyRefunded(charge.ID)
		case amount > unrefunded:
			return Refund{}, refundAmountTooLarge(amount, unrefunded, charge.Currency)
		case amount == 0:
			amount = unrefunded
		}
		return Refund{
			ID:             newID("re_", refundIDLength),
			Charge:         charge.ID,
			Amount:         amount,
			Currency:       charge.Currency,
			Reason:         reason,
			Metadata:       metadata(form),
			Status:         RefundSucceeded,
			IdempotencyKey: idempotencyKey,
		}, nil
	})
	if err != nil {
		return response{}, err
	}
	return encode(http.StatusOK, refund.object()), nil
}

// handleGetRefund serves GET /v1/refunds/{id}.
func (s *Server) handleGetRefund(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)

	id := r.PathValue("id")
	refund, ok := s.store.refund(id)
	if !ok {
		send(w, noSuch(http.StatusNotFound, "refund", "id", id).response())
		return
	}
	send(w, encode(http.StatusOK, refund.object()))
}

// handleListRefunds serves GET /v1/refunds.
func (s *Server) handleListRefunds(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.config.Latency)
	sendList(w, r, "refund", "charge", s.store.newestRefunds(), Refund.object)
}
