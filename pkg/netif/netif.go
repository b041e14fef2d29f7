package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// Manager is the interfaces component of the box.
type Manager struct {
	log    *slog.Logger
	health *health.Registry // nil-safe: missing links are then only logged
	sys    system

	mu      sync.Mutex
	applied *Plan // last plan applied in full; nil before the first
	// touched is what this manager has done to the kernel and not undone,
	// kept across failed applies: see touchedLink.
	touched touchedSet
	missing []string // planned links absent from the system at the last apply
	warned  map[string]bool
}

// system is the kernel side of the manager, split so that tests run the
// same ops on an in-memory state (fake_test.go). The Linux implementation
// (apply_linux.go) uses netlink in one network namespace.
type system interface {
	// observe reads the state diff works from.
	observe() (sysState, error)
	// exec runs one op.
	exec(o op) error
}

// New returns the interfaces component, acting on the network namespace
// the daemon runs in. Missing interfaces are reported to d.Health.
func New(d box.Deps) *Manager {
	return newManager(d, newSystem())
}

func newManager(d box.Deps, sys system) *Manager {
	d = d.For("interfaces")
	return &Manager{log: d.Log, health: d.Health, sys: sys, touched: touchedSet{}, warned: map[string]bool{}}
}

func (m *Manager) Name() string { return "interfaces" }

func (m *Manager) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

// Apply makes the interfaces match the plan, from whatever state the last
// apply left, failed or not: see diff.
func (m *Manager) Apply(ctx context.Context, p box.Plan) error {
	want, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("interfaces: unexpected plan type %T", p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	missing, err := m.converge(ctx, want)
	m.missing = missing
	m.reportMissing(want)
	if err != nil {
		return fmt.Errorf("interfaces: %w", err)
	}
	m.applied = want
	for _, name := range missing {
		l, _ := want.Link(name)
		m.log.Warn("interface is missing; it will be configured when it appears", "interface", name, "role", l.Role)
	}
	return nil
}

// converge observes the system, diffs it against want and runs the ops,
// recording what each is about to do before it runs (touchedSet.before),
// so that whatever an interrupted apply did, the next one can undo. Ops
// that fail do not stop the others: a link whose driver refuses an MTU
// must not leave the rest of the box unconfigured. It returns the planned
// links that do not exist. Called with m.mu held; Apply and the hotplug
// loop share it.
func (m *Manager) converge(ctx context.Context, want *Plan) (missing []string, err error) {
	st, err := m.sys.observe()
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	m.touched.reconcile(st)
	m.touched.adopt(want)
	var errs []error
	for _, o := range diff(m.applied, m.touched, want, st) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		m.touched.before(o)
		if err := m.sys.exec(o); err != nil {
			errs = append(errs, err)
			continue
		}
		m.touched.after(o)
		m.log.Debug("interfaces: done", "op", o.String())
	}
	m.touched.prune(want)
	return missingLinks(want, st), errors.Join(errs...)
}

// Missing lists the planned interfaces that did not exist at the last apply.
func (m *Manager) Missing() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.missing...)
}
