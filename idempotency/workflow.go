package idempotency

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/rocketrides/rocketrides/db"
)

// Workflow is an endpoint written as atomic phases, registered with an
// engine (Engine.Register) under its Name. Every key records the name of its
// workflow, so that the completer resumes it through the same workflow
// (Engine.Resume) without the HTTP request.
type Workflow struct {
	// Name is the workflow's stable name, stored on each of its keys: by
	// convention its method and route pattern, "POST /rides/{id}/cancel".
	// Renaming a workflow strands its unfinished keys (the completer skips
	// them as ErrUnknownWorkflow), so a name outlives the code behind it.
	// At most 100 characters.
	Name string

	// RecoveryPoints are the names of the points between started and
	// finished, each the state a committed phase leaves the key in
	// ("ride_claimed"), at most 50 characters. The engine moves a key only
	// to one of these (RecoveryPoint), and the Phases of every request
	// have exactly one step for each. A point a key may still be at is
	// never removed while such keys can exist.
	RecoveryPoints []string

	// Restore rebuilds a request's phases from its key alone, as the
	// completer needs them: the stored parameters (path parameters
	// included, key.RequestParams), the user (key.UserID). It must not
	// start anything: Resume runs the phases it returns.
	Restore func(ctx context.Context, key *db.IdempotencyKey) (*Phases, error)
}

// Register adds wf to the engine's workflows. It fails for a name already
// registered and for a workflow that could not run: no name or Restore, or
// recovery points that are empty, too long, repeated, or started or
// finished. Register every workflow before the engine serves its first
// request.
func (e *Engine) Register(wf *Workflow) error {
	if err := wf.validate(); err != nil {
		return fmt.Errorf("registering workflow %q: %w", wf.Name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.workflows[wf.Name]; ok {
		return fmt.Errorf("registering workflow %q: already registered", wf.Name)
	}
	registered := *wf
	registered.RecoveryPoints = slices.Clone(wf.RecoveryPoints)
	e.workflows[wf.Name] = &registered
	return nil
}

// Resume drives key to its response through its own workflow, as the
// completer does with each abandoned key: it finds the workflow the key
// records, restores the request's phases from the key (Workflow.Restore),
// and executes them as the key's user with its stored method, path and
// parameters. It only resumes: a key deleted meanwhile (by the reaper) is not
// started over (ErrKeyNotFound). A key of a workflow that is not registered
// is ErrUnknownWorkflow, and nothing is done with it.
func (e *Engine) Resume(ctx context.Context, key *db.IdempotencyKey) (*Response, error) {
	wf, err := e.workflow(key.Workflow)
	if err != nil {
		return nil, fmt.Errorf("idempotency key %d: %w", key.ID, err)
	}
	phases, err := wf.Restore(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("restoring key %d of workflow %q: %w", key.ID, wf.Name, err)
	}
	return e.Execute(ctx, &Request{
		Key:        key.IdempotencyKey,
		Method:     key.RequestMethod,
		Params:     key.RequestParams,
		Path:       key.RequestPath,
		ResumeOnly: true,
		UserID:     key.UserID,
		Workflow:   wf.Name,
	}, phases)
}

// workflow returns the registered workflow named name.
func (e *Engine) workflow(name string) (*Workflow, error) {
	e.mu.RLock()
	wf, ok := e.workflows[name]
	e.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownWorkflow, name)
	}
	return wf, nil
}

func (wf *Workflow) validate() error {
	switch {
	case wf.Name == "" || utf8.RuneCountInString(wf.Name) > 100:
		return errors.New("its name must be 1 to 100 characters")
	case wf.Restore == nil:
		return errors.New("it has no Restore")
	}
	for i, point := range wf.RecoveryPoints {
		switch {
		case point == "" || utf8.RuneCountInString(point) > 50:
			return fmt.Errorf("recovery point %q must be 1 to 50 characters", point)
		case point == RecoveryPointStarted || point == RecoveryPointFinished:
			return fmt.Errorf("recovery point %q is the engine's own", point)
		case slices.Contains(wf.RecoveryPoints[:i], point):
			return fmt.Errorf("recovery point %q is listed twice", point)
		}
	}
	return nil
}

// checkPhases reports phases that do not fit the workflow: no Start, or
// steps other than one for each recovery point.
func (wf *Workflow) checkPhases(phases *Phases) error {
	if phases == nil || phases.Start == nil {
		return fmt.Errorf("workflow %q: phases have no Start", wf.Name)
	}
	for point := range phases.Steps {
		if !wf.hasRecoveryPoint(point) {
			return fmt.Errorf("workflow %q: step for %w %q", wf.Name, ErrUnknownRecoveryPoint, point)
		}
	}
	for _, point := range wf.RecoveryPoints {
		if phases.Steps[point] == nil {
			return fmt.Errorf("workflow %q: no step for recovery point %q", wf.Name, point)
		}
	}
	return nil
}

func (wf *Workflow) hasRecoveryPoint(name string) bool {
	return slices.Contains(wf.RecoveryPoints, name)
}
