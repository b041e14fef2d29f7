package netif

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// Manager is the interfaces component of the box.
type Manager struct {
	log *slog.Logger
	sys system

	warn Warnings // nil: missing links are only logged

	mu      sync.Mutex
	applied *Plan    // last plan applied, to remove what a new one drops
	missing []string // planned links absent from the system at the last apply
	warned  map[string]bool
}

// system is the kernel side of Apply; the Linux implementation uses
// netlink in the current network namespace.
type system interface {
	apply(ctx context.Context, log *slog.Logger, old, want *Plan) (missing []string, err error)
}

// New returns the interfaces component, acting on the current network
// namespace. Missing interfaces are reported to w (nil: logged only).
func New(log *slog.Logger, w Warnings) *Manager {
	return &Manager{log: log, sys: newSystem(), warn: w, warned: map[string]bool{}}
}

func (m *Manager) Name() string { return "interfaces" }

func (m *Manager) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

func (m *Manager) Apply(ctx context.Context, p box.Plan) error {
	want, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("interfaces: unexpected plan type %T", p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	missing, err := m.sys.apply(ctx, m.log, m.applied, want)
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

// Missing lists the planned interfaces that did not exist at the last apply.
func (m *Manager) Missing() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.missing...)
}
