package stripefake

import (
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// store holds the fake's customers, charges and refunds.
type store struct {
	mu        sync.Mutex
	customers map[string]customer
	// charges is in creation order, oldest first.
	charges []Charge
	// chargeIndex maps a charge's id to its index in charges.
	chargeIndex map[string]int
	// refunds is in creation order, oldest first.
	refunds []Refund
	// refundIndex maps a refund's id to its index in refunds.
	refundIndex map[string]int
}

func newStore() *store {
	return &store{
		customers:   make(map[string]customer),
		chargeIndex: make(map[string]int),
		refundIndex: make(map[string]int),
	}
}

// addCustomer stores c, setting its creation time.
func (s *store) addCustomer(c customer) customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Created = time.Now()
	s.customers[c.ID] = c
	return c
}

func (s *store) customer(id string) (customer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[id]
	return c, ok
}

// addCharge stores c, setting its creation time. Setting it under the
// lock keeps creation order and creation times in step, so that the
// newest charge is always the last one.
func (s *store) addCharge(c Charge) Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Created = time.Now()
	s.chargeIndex[c.ID] = len(s.charges)
	s.charges = append(s.charges, c)
	return c
}

func (s *store) charge(id string) (Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.chargeIndex[id]
	if !ok {
		return Charge{}, false
	}
	return s.charges[i], true
}

// newestCharges returns all charges, newest first. The charges share
// their Metadata maps with the store, which never changes them.
func (s *store) newestCharges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	newest := slices.Clone(s.charges)
	slices.Reverse(newest)
	return newest
}

// snapshot returns a copy of all charges, oldest first, that the caller
// may change at will.
func (s *store) snapshot() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	charges := slices.Clone(s.charges)
	for i := range charges {
		charges[i].Metadata = maps.Clone(charges[i].Metadata)
	}
	return charges
}

// addRefund refunds the charge chargeID with the refund that build makes
// of it, unless build rejects it. It sets the refund's creation time and
// adds its amount to the charge's AmountRefunded. The whole runs under
// the store's lock, so that concurrent refunds of a charge never refund
// more than it: build sees every earlier refund in the charge's
// AmountRefunded.
func (s *store) addRefund(chargeID string, build func(Charge) (Refund, *stripeError)) (Refund, *stripeError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.chargeIndex[chargeID]
	if !ok {
		return Refund{}, noSuch(http.StatusBadRequest, "charge", "charge", chargeID)
	}
	refund, err := build(s.charges[i])
	if err != nil {
		return Refund{}, err
	}
	refund.Created = time.Now()
	s.charges[i].AmountRefunded += refund.Amount
	s.refundIndex[refund.ID] = len(s.refunds)
	s.refunds = append(s.refunds, refund)
	return refund, nil
}

func (s *store) refund(id string) (Refund, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.refundIndex[id]
	if !ok {
		return Refund{}, false
	}
	return s.refunds[i], true
}

// newestRefunds returns all refunds, newest first. The refunds share
// their Metadata maps with the store, which never changes them.
func (s *store) newestRefunds() []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	newest := slices.Clone(s.refunds)
	slices.Reverse(newest)
	return newest
}

// refundSnapshot returns a copy of all refunds, oldest first, that the
// caller may change at will.
func (s *store) refundSnapshot() []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	refunds := slices.Clone(s.refunds)
	for i := range refunds {
		refunds[i].Metadata = maps.Clone(refunds[i].Metadata)
	}
	return refunds
}
