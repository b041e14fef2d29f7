package resolver

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl sets SO_MARK on upstream sockets so that policy routing
// sends them through the uplink an upstream is pinned to.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
