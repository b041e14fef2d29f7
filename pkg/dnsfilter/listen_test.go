package dnsfilter

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestBindsBeforeAddressExistsAndRebindsOnApply: a zone address that no
// interface has yet can be bound (the interfaces component may configure
// it a moment later), and an Apply that moves a zone moves its listener.
func TestBindsBeforeAddressExistsAndRebindsOnApply(t *testing.T) {
	ts := startServerOpts(t, testLists(t, t.TempDir(), nil), nil, nil)
	ts.waitLists(t)
	plan := *ts.plan
	plan.Listeners = append([]Listener(nil), ts.plan.Listeners...)
	// 198.51.100.77 is on no interface of this machine.
	plan.Listeners[0].Addr = netip.MustParseAddr("198.51.100.77")
	if err := ts.f.Apply(context.Background(), &plan); err != nil {
		t.Fatal(err)
	}
	if w := ts.warning("dns-listen:peda"); w != "" {
		t.Errorf("binding an address not configured yet failed: %s", w)
	}
	ts.f.mu.Lock()
	got := ts.f.listeners["peda"].addr
	ts.f.mu.Unlock()
	if _, port, _ := net.SplitHostPort(ts.addrs["peda"]); got != net.JoinHostPort("198.51.100.77", port) {
		t.Errorf("peda listener on %s after the zone moved", got)
	}
	// The old address no longer answers; the other zones still do.
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	if _, _, err := c.Exchange(m, ts.addrs["peda"]); err == nil {
		t.Error("the zone's old address still answers")
	}
	if r := ts.query(t, "admin", "example.org.", dns.TypeA, false, false); r.Rcode != dns.RcodeSuccess {
		t.Errorf("admin zone after peda moved: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestBoxOwnLookupsAnsweredUnfiltered: the box's own listener (Own, the
// 127.0.0.1 of /etc/resolv.conf on the image) resolves through the
// upstreams a name the pupils' profile blocks: the box's NTP, NOC and
// tunnel names are never a category's business, and the zones keep
// their filtering.
func TestBoxOwnLookupsAnsweredUnfiltered(t *testing.T) {
	own := netip.MustParseAddr("127.0.40.1")
	ts := startServerOpts(t, testLists(t, t.TempDir(), nil), nil, func(o *Options) { o.Own = own })
	ts.waitLists(t)
	_, port, _ := net.SplitHostPort(ts.addrs["peda"])
	ts.addrs[OwnZone] = net.JoinHostPort(own.String(), port)

	if r := ts.query(t, OwnZone, "example.com.", dns.TypeA, false, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("box's own lookup of example.com: %s, %d answers; want an answer", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if r := ts.query(t, OwnZone, "example.com.", dns.TypeA, true, false); r.Rcode != dns.RcodeSuccess {
		t.Errorf("box's own lookup over TCP: %s", dns.RcodeToString[r.Rcode])
	}
	if r := ts.query(t, "peda", "example.com.", dns.TypeA, false, false); r.Rcode != dns.RcodeNameError {
		t.Errorf("pupils' zone lookup of example.com: %s, want NXDOMAIN (blocked)", dns.RcodeToString[r.Rcode])
	}
	if w := ts.warning("dns-listen:" + OwnZone); w != "" {
		t.Errorf("own listener warning: %s", w)
	}
}
