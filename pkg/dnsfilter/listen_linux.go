package dnsfilter

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenConfig returns a ListenConfig whose sockets may bind the zone
// address before it is configured (IP_FREEBIND: interfaces are set up by
// another component, and a bridge's address can come a moment later), and
// share the port between several UDP sockets (SO_REUSEPORT), which the
// kernel balances across our readers.
func listenConfig(reusePort bool) *net.ListenConfig {
	return &net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "udp6" || network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
			if serr == nil && reusePort {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

func listenUDP(addr string, reusePort bool) (net.PacketConn, error) {
	return listenConfig(reusePort).ListenPacket(context.Background(), "udp", addr)
}

func listenTCP(addr string) (net.Listener, error) {
	return listenConfig(false).Listen(context.Background(), "tcp", addr)
}
