package dhcpclient

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzLeaseFromACK feeds arbitrary packets to the ACK parser: whatever a
// server (or an attacker on the uplink) sends, a lease it accepts must be
// one the rest of the box can use.
func FuzzLeaseFromACK(f *testing.F) {
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(testHW), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	good, _ := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(testAddr.AsSlice()),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(testServer.AsSlice()),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServer.AsSlice())))
	f.Add(good.ToBytes())
	noMask, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 3)), dhcpv4.WithLeaseTime(1))
	f.Add(noMask.ToBytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		l, err := leaseFromACK(msg, t0, testServer)
		if err != nil {
			return
		}
		if err := l.check(); err != nil {
			t.Fatalf("accepted lease %+v fails its check: %v", l, err)
		}
		if l.Gateway.IsValid() && (!l.Address.Contains(l.Gateway) || l.Gateway == l.Address.Addr()) {
			t.Fatalf("gateway %v unusable for %v", l.Gateway, l.Address)
		}
	})
}
