package resolver

import (
	"syscall"

	"passerelle/pkg/netmark"
)

// markControl sets SO_MARK on upstream sockets so that policy routing
// sends them through the uplink an upstream is pinned to.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return netmark.Control(mark)
}
