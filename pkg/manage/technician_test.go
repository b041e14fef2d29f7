package manage

import (
	"context"
	"errors"
	"strings"
	"testing"

	"passerelle/pkg/config"
)

// TestTechnicianConfirmsAndRollsBack: a pending generation whose gate
// would never pass is committed by Confirm; RollBack then returns to the
// generation before it through the submit path, and once more to the
// base; with nothing older it says so.
func TestTechnicianConfirmsAndRollsBack(t *testing.T) {
	r := newRig(t, Probe{Name: "slow", Check: func(context.Context, *config.Config, any) error { return errors.New("not yet") }})
	ctx := context.Background()
	if _, err := r.m.Confirm(); !errors.Is(err, ErrNothingPending) {
		t.Fatalf("Confirm with nothing pending: %v", err)
	}
	res := r.m.Handle(ctx, r.bundle(t, 1, "v1", nil), "push")
	if res.Outcome != OutcomePending {
		t.Fatalf("v1: %+v", res)
	}
	if c, err := r.m.Confirm(); err != nil || c.Outcome != OutcomeCommitted || c.Gen != res.Gen {
		t.Fatalf("Confirm: %+v %v", c, err)
	}
	if fin, _ := r.m.Wait(ctx, res.Gen); fin.Outcome != OutcomeCommitted {
		t.Fatalf("after Confirm: %+v", fin)
	}
	// The gate, still running until its next round, must not undo it.
	res2 := r.m.Handle(ctx, r.bundle(t, 2, "v2", nil), "push")
	if _, err := r.m.Confirm(); err != nil {
		t.Fatal(err)
	}
	st, _ := r.m.store.State()
	if st.Current != res2.Gen || st.Pending != nil {
		t.Fatalf("state after two confirmations: %+v", st)
	}
	// Back to v1, then to the base.
	rb, err := r.m.RollBack(ctx, "asked on the status page")
	if err != nil || rb.Reason != RollbackTechnician || rb.Gen != res2.Gen {
		t.Fatalf("RollBack: %+v %v", rb, err)
	}
	st, _ = r.m.store.State()
	if st.Current != res.Gen || r.m.running.Identity.Name != "v1" {
		t.Fatalf("after rollback: current %d running %q", st.Current, r.m.running.Identity.Name)
	}
	if g, _ := r.m.store.Get(res2.Gen); g.State != StateRolledBack || !strings.Contains(g.Why, "technician") {
		t.Errorf("v2 after rollback: %+v", g)
	}
	if _, err := r.m.RollBack(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	if r.m.running.Identity.Name != "base" {
		t.Errorf("second rollback runs %q, want base", r.m.running.Identity.Name)
	}
	if _, err := r.m.RollBack(ctx, "once more"); err == nil || !strings.Contains(err.Error(), "no generation kept before") {
		t.Errorf("rollback past the base: %v", err)
	}
	if got := strings.Join(r.box.calls(), ","); got != "bundle-push,bundle-push,rollback,rollback" {
		t.Errorf("submits %s", got)
	}
	// A pending generation rolled back by the technician ends its window.
	res3 := r.m.Handle(ctx, r.bundle(t, 3, "v3", nil), "push")
	if rb, err := r.m.RollBack(ctx, "not this one"); err != nil || rb.Outcome != OutcomeRolledBack || rb.Gen != res3.Gen {
		t.Fatalf("RollBack of a pending one: %+v %v", rb, err)
	}
	if r.m.running.Identity.Name != "base" {
		t.Errorf("after rolling back v3: %q", r.m.running.Identity.Name)
	}
}

// TestTechnicianRollBackKeepsStateWhenApplyFails: a refused apply leaves
// the current generation in place.
func TestTechnicianRollBackKeepsStateWhenApplyFails(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	res := r.m.Handle(ctx, r.bundle(t, 1, "v1", nil), "push")
	r.m.Confirm()
	r.box.fail = errors.New("netlink says no")
	if _, err := r.m.RollBack(ctx, "x"); err == nil || !strings.Contains(err.Error(), "stays on generation") {
		t.Fatalf("RollBack with a failing apply: %v", err)
	}
	if st, _ := r.m.store.State(); st.Current != res.Gen {
		t.Errorf("current %d, want %d", st.Current, res.Gen)
	}
}
