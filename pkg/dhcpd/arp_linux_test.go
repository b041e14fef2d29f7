package dhcpd

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/netnstest"
)

// TestARPProberOnAVethPair probes, from the box's end of a veth pair, the
// address of a client at the other end (answered) and an address nobody
// has (silent), in fresh namespaces.
func TestARPProberOnAVethPair(t *testing.T) {
	ns, client := netnstest.New(t), netnstest.New(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "zone0"}, PeerName: "host0"}
	if err := ns.Handle().LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	peer, err := ns.Handle().LinkByName("host0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle().LinkSetNsFd(peer, client.FD()); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]string{"zone0": "10.9.0.1/24", "host0": "10.9.0.2/24"} {
		h := ns.Handle()
		if name == "host0" {
			h = client.Handle()
		}
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ad, _ := netlink.ParseAddr(a)
		if err := h.AddrAdd(l, ad); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	up, silent := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.3")
	// The first probe may leave before the new link carries (a veth's
	// carrier comes up asynchronously): try a few rounds, as the server
	// does (silentProbes rounds, probeEvery apart).
	var got map[netip.Addr]bool
	for range 3 {
		err = ns.Do(func() error {
			var err error
			got, err = newARPProber("zone0", netip.MustParseAddr("10.9.0.1")).Probe(context.Background(), []netip.Addr{up, silent})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got[up] {
			break
		}
	}
	if !got[up] || got[silent] || len(got) != 1 {
		t.Errorf("answered: %v, want only %s", got, up)
	}
}
