package netif

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/netnstest"
)

// TestRunConfiguresLinkWhenItAppears applies a plan in an empty network
// namespace, runs the hotplug loop there, then creates the planned link:
// the loop configures it and clears its warning.
func TestRunConfiguresLinkWhenItAppears(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Handle()
	reg := health.New(nil)
	m := newManager(box.Deps{Health: reg}, newLinuxSystem(netns.NsHandle(ns.FD())))
	plan := &Plan{Forwarding: true, Links: []Link{
		{Name: "lan0", Role: "zone peda", Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24")}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("missing warning", func() bool { _, ok := reg.Get(MissingCode("lan0")); return ok })

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan0-peer"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	waitFor("lan0 address", func() bool {
		l, err := h.LinkByName("lan0")
		if err != nil {
			return false
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		return len(addrs) == 1 && addrs[0].IPNet.String() == "10.10.0.1/24"
	})
	waitFor("warning cleared", func() bool { _, ok := reg.Get(MissingCode("lan0")); return !ok })

	// Unplugged: reported missing again.
	l, _ := h.LinkByName("lan0")
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	waitFor("missing warning again", func() bool { _, ok := reg.Get(MissingCode("lan0")); return ok })
}
