package netmark

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control returns a socket Control function (net.Dialer.Control,
// net.ListenConfig.Control) that sets SO_MARK: the socket's traffic then
// follows the table that mark selects, whichever uplink carries new flows.
// Every pinned socket of the box (probes, DNS upstreams, the DHCP client,
// later the tunnel and the metrics push) uses this one copy. Mark 0 gives
// nil: nothing to set.
func Control(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		return SetMark(c, mark)
	}
}

// SetMark sets SO_MARK on a raw connection.
func SetMark(c syscall.RawConn, mark uint32) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	})
	if err := errors.Join(err, serr); err != nil {
		return fmt.Errorf("set SO_MARK %#x: %w", mark, err)
	}
	return nil
}

// BindControl pins a socket to an uplink: bound to its interface (probes
// and the DHCP client must never leave by another) and, when mark is not
// 0, marked so the route lookup uses that uplink's table.
func BindControl(ifname string, mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname); serr != nil {
				serr = fmt.Errorf("bind to %s: %w", ifname, serr)
			}
		})
		if err := errors.Join(err, serr); err != nil || mark == 0 {
			return err
		}
		return SetMark(c, mark)
	}
}
