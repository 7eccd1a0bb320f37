package stripefake

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// store holds the fake's customers and charges.
type store struct {
	mu        sync.Mutex
	customers map[string]customer
	// charges is in creation order, oldest first.
	charges []Charge
	// chargeIndex maps a charge's id to its index in charges.
	chargeIndex map[string]int
}

func newStore() *store {
	return &store{
		customers:   make(map[string]customer),
		chargeIndex: make(map[string]int),
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
