package dhcpd

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// listen opens the server socket of one zone: 0.0.0.0:67 bound to the
// zone's interface (SO_BINDTODEVICE), so broadcasts from clients without an
// address arrive, replies leave by that interface only, and each zone has a
// socket of its own on the same port (SO_REUSEADDR). Broadcast is allowed
// for replies to clients that have no address yet.
func listen(device string) (net.PacketConn, error) {
	return server4.NewIPv4UDPConn(device, &net.UDPAddr{Port: serverPort})
}
