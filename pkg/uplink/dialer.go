package uplink

import (
	"fmt"
	"net"
	"syscall"

	"passerelle/pkg/netmark"
)

// Control returns a socket Control function that pins the socket's traffic
// to the uplink of that mark (see netmark.Control).
func Control(mark uint32) func(network, address string, c syscall.RawConn) error {
	return netmark.Control(mark)
}

// Mark returns the firewall mark of the named uplink.
func (m *Manager) Mark(name string) (uint32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if lk, ok := m.links[name]; ok {
		return lk.cfg.Mark, true
	}
	return 0, false
}

// Dialer returns a dialer whose connections leave through the named
// uplink, healthy or not.
func (m *Manager) Dialer(name string) (*net.Dialer, error) {
	mark, ok := m.Mark(name)
	if !ok {
		return nil, fmt.Errorf("no uplink named %q", name)
	}
	return &net.Dialer{Control: Control(mark)}, nil
}

// Preferred returns the mark of the named uplink while it is usable, and
// 0 (no mark: follow the uplink of new flows) otherwise. The academy
// tunnel prefers Renater this way and falls back with everyone else.
func (m *Manager) Preferred(name string) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	lk, ok := m.links[name]
	if !ok || !lk.tr.state.usable() || !lk.tr.carrier || !lk.gateway().IsValid() {
		return 0
	}
	return lk.cfg.Mark
}
