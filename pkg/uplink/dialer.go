package uplink

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control returns a socket Control function (net.Dialer.Control,
// net.ListenConfig.Control) that sets SO_MARK: the socket's traffic then
// follows that uplink's table, whichever uplink carries new flows. The
// box's own traffic uses it to pin itself to an uplink: probes, the
// tunnel, DNS upstreams, metrics push.
func Control(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err := errors.Join(err, serr); err != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, err)
		}
		return nil
	}
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
