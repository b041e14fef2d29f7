package manage

import (
	"context"
	"errors"
	"fmt"

	"passerelle/pkg/config"
)

// The technician's actions on the status page (issue 17): confirm the
// pending generation now, or go back to the previous one. Both go through
// the same store, events and submit path as the health gate's decisions.

// ErrNothingPending: no generation is inside its confirm window.
var ErrNothingPending = errors.New("no configuration is awaiting confirmation")

func (m *Manager) stillPending(w *window) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pending == w
}

// Confirm commits the pending generation at once, without waiting for the
// health gate: the technician in the school has checked that the box
// works. It logs bundle-committed like the gate.
func (m *Manager) Confirm() (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.pending
	if w == nil {
		return Result{}, ErrNothingPending
	}
	m.log.Info("pending configuration confirmed by the technician", "gen", w.gen.N, "version", w.gen.Version)
	m.commit(w)
	st, _ := m.store.State()
	return Result{At: m.now(), Source: w.gen.Source, Version: w.gen.Version, Outcome: OutcomeCommitted, Gen: w.gen.N,
		Detail: fmt.Sprintf("current generation %d", st.Current)}, nil
}

// RollBack returns to the previous generation: while one is pending, the
// one it replaced (its window ends now); otherwise the newest committed
// (or base) generation older than the current one, applied through the
// submit path. The abandoned generation is marked rolled back, and
// bundle-rolled-back is logged with reason "technician". When the apply
// fails the box stays where it was (the submit path restores it).
func (m *Manager) RollBack(ctx context.Context, why string) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.pending; w != nil {
		return m.rollback(w, RollbackTechnician, why), nil
	}
	st, err := m.store.State()
	if err != nil {
		return Result{}, fmt.Errorf("generations unreadable: %w", err)
	}
	if st.Current == 0 {
		return Result{}, errors.New("no generation to go back to: the box runs its configuration file")
	}
	cur, err := m.store.Get(st.Current)
	if err != nil {
		return Result{}, fmt.Errorf("current generation %d unreadable: %w", st.Current, err)
	}
	gs, err := m.store.List()
	if err != nil {
		return Result{}, fmt.Errorf("generations unreadable: %w", err)
	}
	var prev *Generation
	for i := range gs { // newest first
		if gs[i].N < st.Current && (gs[i].State == StateCommitted || gs[i].State == StateBase) {
			prev = &gs[i]
			break
		}
	}
	if prev == nil {
		return Result{}, fmt.Errorf("no generation kept before generation %d", st.Current)
	}
	cfg, err := config.Parse(prev.Name, []byte(prev.Config))
	if err != nil {
		return Result{}, fmt.Errorf("generation %d unusable: %w", prev.N, err)
	}
	if err := m.o.Submitter.Submit(ctx, cfg, "rollback"); err != nil {
		return Result{}, fmt.Errorf("generation %d not applied, the box stays on generation %d: %w", prev.N, cur.N, err)
	}
	cur.State, cur.Why = StateRolledBack, RollbackTechnician+": "+why
	if err := m.store.Put(cur); err != nil {
		m.log.Error("could not mark the generation rolled back", "gen", cur.N, "err", err)
	}
	st.Current = prev.N
	if err := m.store.SetState(st); err != nil {
		m.log.Error("could not record the rollback", "gen", prev.N, "err", err)
	}
	m.running, m.text = cfg, []byte(prev.Config)
	m.met.setState(st, 0)
	r := Result{At: m.now(), Source: cur.Source, UAI: cfg.Identity.UAI, Version: cur.Version, KeyID: cur.KeyID,
		Outcome: OutcomeRolledBack, Reason: RollbackTechnician, Detail: why, Gen: cur.N}
	m.record(r)
	m.log.Warn("configuration rolled back", "event", EvBundleRolledBack, "version", cur.Version, "gen", cur.N,
		"reason", RollbackTechnician, "detail", why, "restored", prev.N)
	return r, nil
}
