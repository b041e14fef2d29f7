package netif

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"passerelle/pkg/box"
)

// errInjected is the failure the fakes inject.
var errInjected = errors.New("injected failure")

// faults makes ops fail from some point on, as a kernel that stops
// cooperating halfway through an apply would, leaving a half-applied
// state behind.
type faults struct {
	n        int           // ops seen
	failFrom int           // ops numbered failFrom and later fail; 0: none
	once     bool          // only op failFrom fails
	after    func(op) bool // once an op matching it succeeded, later ops fail
	broken   bool
}

// failAt arms a failure at the nth next op (1: the next one) and every op
// after it, until heal.
func (f *faults) failAt(n int) { f.failFrom = f.n + n }

// failAfter arms a failure of every op after the first that matches.
func (f *faults) failAfter(match func(op) bool) { f.after = match }

func (f *faults) heal() { *f = faults{n: f.n} }

func (f *faults) check() error {
	f.n++
	if f.broken || (f.failFrom > 0 && (f.n == f.failFrom || f.n > f.failFrom && !f.once)) {
		return errInjected
	}
	return nil
}

func (f *faults) done(o op) {
	if f.after != nil && f.after(o) {
		f.broken = true
	}
}

// fakeSystem is the kernel in memory: a sysState the ops change as
// netlink would (sysState.apply), and the ops it ran, as text.
type fakeSystem struct {
	faults
	st  sysState
	ops []string
}

func newFake(st sysState) *fakeSystem {
	if st.Links == nil {
		st.Links = map[string]linkState{}
	}
	return &fakeSystem{st: st}
}

func (f *fakeSystem) observe() (sysState, error) { return f.st.clone(), nil }

func (f *fakeSystem) exec(o op) error {
	if err := f.check(); err != nil {
		f.ops = append(f.ops, o.String()+" (failed)")
		return err
	}
	if err := f.st.apply(o); err != nil {
		f.ops = append(f.ops, o.String()+" (refused)")
		return err
	}
	f.ops = append(f.ops, o.String())
	f.done(o)
	return nil
}

// take returns the ops run since the last take, one a line.
func (f *fakeSystem) take() string {
	s := strings.Join(f.ops, "\n")
	f.ops = nil
	if s != "" {
		s += "\n"
	}
	return s
}

// faultySystem wraps a real executor with the same fault injection, for
// tests in a network namespace.
type faultySystem struct {
	system
	faults
}

func (f *faultySystem) exec(o op) error {
	if err := f.check(); err != nil {
		return err
	}
	if err := f.system.exec(o); err != nil {
		return err
	}
	f.done(o)
	return nil
}

func newTestManager(t *testing.T, sys system) *Manager {
	t.Helper()
	return newManager(box.Deps{}, sys)
}

// physical returns the state of a box whose links exist, down, with no
// address, and forwarding off.
func physical(names ...string) sysState {
	st := sysState{Links: map[string]linkState{}}
	for _, n := range names {
		st.Links[n] = linkState{MTU: 1500}
	}
	return st
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
