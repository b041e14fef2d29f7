package box_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// textPlan is a plan that is its own rendering.
type textPlan string

func (p textPlan) String() string { return string(p) + "\n" }

// fake is a component whose "system state" is the last plan applied, and
// which can be told to fail planning or applying a given plan.
type fake struct {
	name      string
	state     string
	failPlan  bool
	failApply string // plan text whose apply fails (after changing state halfway)
	log       *[]string
}

func (f *fake) Name() string { return f.name }

func (f *fake) Plan(cfg *config.Config) (box.Plan, error) {
	if f.failPlan {
		return nil, errors.New("cannot plan")
	}
	return textPlan(cfg.Identity.Name), nil
}

func (f *fake) Apply(_ context.Context, p box.Plan) error {
	s := string(p.(textPlan))
	*f.log = append(*f.log, f.name+"="+s)
	if s == f.failApply {
		f.state = "half-" + s
		return errors.New("kernel said no")
	}
	f.state = s
	return nil
}

func cfgNamed(t *testing.T, name string) *config.Config {
	t.Helper()
	c, err := config.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Identity.Name = name
	return c
}

func newBox(comps ...*fake) *box.Box {
	var cs []box.Component
	for _, c := range comps {
		cs = append(cs, c)
	}
	return box.New(slog.New(slog.NewTextHandler(io.Discard, nil)), cs...)
}

func TestApplyRunsComponentsInOrder(t *testing.T) {
	var log []string
	a, b := &fake{name: "a", log: &log}, &fake{name: "b", log: &log}
	bx := newBox(a, b)
	rep, err := bx.Apply(context.Background(), cfgNamed(t, "one"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(log, " "); got != "a=one b=one" {
		t.Errorf("apply order = %q, want a=one b=one", got)
	}
	if len(rep.Results) != 2 || rep.RolledBack {
		t.Errorf("report = %+v", rep)
	}
	if bx.Current().Identity.Name != "one" {
		t.Errorf("current config not updated")
	}
}

func TestFailedApplyRestoresPreviousConfig(t *testing.T) {
	var log []string
	a := &fake{name: "a", log: &log}
	b := &fake{name: "b", log: &log, failApply: "two"}
	c := &fake{name: "c", log: &log}
	bx := newBox(a, b, c)
	if _, err := bx.Apply(context.Background(), cfgNamed(t, "one")); err != nil {
		t.Fatal(err)
	}
	log = nil
	rep, err := bx.Apply(context.Background(), cfgNamed(t, "two"))
	if err == nil {
		t.Fatal("apply of a failing component succeeded")
	}
	if !rep.RolledBack || rep.RollbackErr != nil {
		t.Errorf("report = %+v, want a clean rollback", rep)
	}
	// a and the half-applied b get "one" back; c was never touched.
	if got := strings.Join(log, " "); got != "a=two b=two a=one b=one" {
		t.Errorf("sequence = %q", got)
	}
	for _, f := range []*fake{a, b, c} {
		if f.state != "one" {
			t.Errorf("%s state = %q, want one", f.name, f.state)
		}
	}
	if bx.Current().Identity.Name != "one" {
		t.Errorf("current = %q, want the previous config", bx.Current().Identity.Name)
	}
	if !strings.Contains(rep.String(), "rolled back") {
		t.Errorf("report text does not say it rolled back:\n%s", rep)
	}
}

func TestPlanFailureTouchesNothing(t *testing.T) {
	var log []string
	a := &fake{name: "a", log: &log}
	b := &fake{name: "b", log: &log, failPlan: true}
	bx := newBox(a, b)
	_, err := bx.Apply(context.Background(), cfgNamed(t, "one"))
	var pe *box.PlanError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a PlanError", err)
	}
	if len(log) != 0 {
		t.Errorf("components were applied despite a plan failure: %v", log)
	}
	if !strings.Contains(err.Error(), "b: cannot plan") {
		t.Errorf("error does not name the component: %v", err)
	}
}

func TestInvalidConfigIsNotApplied(t *testing.T) {
	var log []string
	bx := newBox(&fake{name: "a", log: &log})
	c := cfgNamed(t, "one")
	c.Zones[0].Subnet = c.Zones[1].Subnet
	if _, err := bx.Apply(context.Background(), c); err == nil {
		t.Fatal("an invalid config was applied")
	}
	if len(log) != 0 {
		t.Errorf("applied: %v", log)
	}
}

func TestFirstApplyFailureHasNothingToRestore(t *testing.T) {
	var log []string
	bx := newBox(&fake{name: "a", log: &log, failApply: "one"})
	rep, err := bx.Apply(context.Background(), cfgNamed(t, "one"))
	if err == nil || !rep.RolledBack || rep.RollbackErr == nil {
		t.Fatalf("err=%v report=%+v: want a failure that reports no previous config", err, rep)
	}
	if bx.Current() != nil {
		t.Error("a failed first apply became current")
	}
}
