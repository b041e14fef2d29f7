package main

import (
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/netnstest"
)

// TestUnhealthyFaultCutsOnlyTheUplinks: the test images' "unhealthy"
// fault drops what the box sends through its uplinks' interfaces, and
// nothing else (the LAN still answers), in a table of its own.
func TestUnhealthyFaultCutsOnlyTheUplinks(t *testing.T) {
	box, peer := netnstest.New(t), netnstest.New(t)
	h, ph := box.Handle(), peer.Handle()
	for _, l := range []struct{ name, peer, addr, peerAddr string }{
		{"wan0", "isp0", "192.0.2.1/24", "192.0.2.2/24"},
		{"lan0", "cl0", "198.51.100.1/24", "198.51.100.2/24"},
	} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.name}, PeerName: l.peer}); err != nil {
			t.Fatalf("veth %s: %v", l.name, err)
		}
		p, err := h.LinkByName(l.peer)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetNsFd(p, peer.FD()); err != nil {
			t.Fatal(err)
		}
		for _, side := range []struct {
			h          *netlink.Handle
			name, addr string
		}{{h, l.name, l.addr}, {ph, l.peer, l.peerAddr}} {
			link, err := side.h.LinkByName(side.name)
			if err != nil {
				t.Fatal(err)
			}
			a, err := netlink.ParseAddr(side.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := side.h.AddrAdd(link, a); err != nil {
				t.Fatal(err)
			}
			if err := side.h.LinkSetUp(link); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A listener of the peer's namespace answers on both links' addresses
	// (the kernel completes the handshake; nobody needs to accept).
	var ln net.Listener
	if err := peer.Do(func() (err error) { ln, err = net.Listen("tcp4", ":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answers := func(peer string) bool {
		return box.Do(func() error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(peer, "7000"), 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	}
	const isp, client = "192.0.2.2", "198.51.100.2"
	if !answers(isp) || !answers(client) {
		t.Fatal("the peers do not answer before the fault")
	}
	if err := box.Do(func() error { return cutUplinks([]string{"wan0"}) }); err != nil {
		t.Fatal(err)
	}
	if answers(isp) {
		t.Error("the uplink's peer still answers after the fault")
	}
	if !answers(client) {
		t.Error("the LAN's peer no longer answers after the fault")
	}
	if out, err := box.Run("", "nft", "list", "table", "inet", faultTable); err != nil {
		t.Errorf("nft list table inet %s: %v\n%s", faultTable, err, out)
	}
}
