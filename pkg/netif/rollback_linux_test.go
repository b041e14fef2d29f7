package netif

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/netnstest"
)

// rollbackConfig is a school with a static uplink and zones on the given
// interfaces (more than one: a bridge).
func rollbackConfig(wanMTU int, zones ...config.Zone) *config.Config {
	return &config.Config{
		Uplinks: []config.Uplink{{Name: "renater", Interface: "wan0", Addressing: config.AddressingStatic,
			Address: netip.MustParsePrefix("192.0.2.2/24"), MTU: wanMTU}},
		Zones: zones,
	}
}

func zone(name, subnet, addr string, ifaces ...string) config.Zone {
	return config.Zone{Name: name, Interfaces: ifaces, Subnet: netip.MustParsePrefix(subnet), Address: netip.MustParseAddr(addr)}
}

// TestRollbackInNamespace is issue 10's reproduction on a real kernel: in
// a fresh namespace, apply A (peda on lan0 alone, guest on a bridge of
// lan2 and lan3), then B (wan0's MTU, peda's address, guest down to lan2,
// a new admin zone on a bridge of lan1 and lan3) failing right after lan1
// joins br-admin, then A again: the namespace must be exactly as A left
// it, and links the box never configured untouched throughout.
func TestRollbackInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Handle()
	for _, n := range []string{"wan0", "lan0", "lan1", "lan2", "lan3"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n}, PeerName: n + "p"}); err != nil {
			t.Fatal(err)
		}
	}
	// Someone else's bridge with a port and an address: never ours.
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-lab"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}, PeerName: "eth9p"}); err != nil {
		t.Fatal(err)
	}
	brLab, eth9 := mustLink(t, h, "br-lab"), mustLink(t, h, "eth9")
	if err := h.LinkSetMaster(eth9, brLab); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(brLab); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(brLab, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(172, 16, 0, 1), Mask: net.CIDRMask(16, 32)}}); err != nil {
		t.Fatal(err)
	}

	planA, err := Compile(rollbackConfig(0,
		zone("peda", "10.10.0.0/24", "10.10.0.1", "lan0"),
		zone("guest", "10.30.0.0/24", "10.30.0.1", "lan2", "lan3")))
	if err != nil {
		t.Fatal(err)
	}
	planB, err := Compile(rollbackConfig(1400,
		zone("peda", "10.10.0.0/23", "10.10.1.1", "lan0"),
		zone("guest", "10.30.0.0/24", "10.30.0.1", "lan2"),
		zone("admin", "10.20.0.0/24", "10.20.0.1", "lan1", "lan3")))
	if err != nil {
		t.Fatal(err)
	}

	ls := newLinuxSystem(netns.NsHandle(ns.FD()))
	sys := &faultySystem{system: ls}
	m := newManager(box.Deps{}, sys)
	dump := func() string {
		t.Helper()
		st, err := ls.observe()
		if err != nil {
			t.Fatal(err)
		}
		return st.String()
	}
	before := dump()

	ctx := context.Background()
	if err := m.Apply(ctx, planA); err != nil {
		t.Fatalf("apply A: %v", err)
	}
	stateA := dump()
	for _, want := range []string{
		"sysctl net.ipv4.ip_forward = 1\n",
		"link br-guest bridge up mtu 1500 addr 10.30.0.1/24\n",
		"link lan0 up mtu 1500 addr 10.10.0.1/24\n",
		"link lan1 down mtu 1500\n",
		"link lan2 master br-guest up mtu 1500\n",
		"link lan3 master br-guest up mtu 1500\n",
		"link wan0 up mtu 1500 addr 192.0.2.2/24\n",
	} {
		if !strings.Contains(stateA, want) {
			t.Errorf("after A, no %q in:\n%s", want, stateA)
		}
	}
	if out, err := ns.Run("", "cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || out != "1\n" {
		t.Errorf("ip_forward in the namespace = %q, %v", out, err)
	}

	sys.failAfter(func(o op) bool { return o.kind == opSetMaster && o.link == "lan1" && o.master == "br-admin" })
	if err := m.Apply(ctx, planB); !errors.Is(err, errInjected) {
		t.Fatalf("apply B = %v, want the injected failure", err)
	}
	sys.heal()
	half := dump()
	if !strings.Contains(half, "link br-admin bridge") || !strings.Contains(half, "link lan1 master br-admin") {
		t.Fatalf("B did not fail where intended; state:\n%s", half)
	}

	if err := m.Apply(ctx, planA); err != nil {
		t.Fatalf("apply A again: %v", err)
	}
	if got := dump(); got != stateA {
		t.Errorf("after rollback:\n%s\nwant A's:\n%s\n(B left:\n%s)", got, stateA, half)
	}

	// Dropping every zone releases all the box made; the rest is as it
	// was before the box came.
	if err := m.Apply(ctx, &Plan{Forwarding: false}); err != nil {
		t.Fatalf("apply nothing: %v", err)
	}
	if got := dump(); got != before {
		t.Errorf("after dropping everything:\n%s\nwant the state before:\n%s", got, before)
	}
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
