package dhcpd

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"passerelle/pkg/config"
)

var clientSrc = netip.MustParseAddrPort("0.0.0.0:68")

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)} }
func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}
func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
func unlimited() Limits {
	return Limits{ClientRate: 1e9, ClientBurst: 1e9, ZoneRate: 1e9, ZoneBurst: 1e9}
}
func hw6(h net.HardwareAddr) (m [6]byte) { copy(m[:], h); return m }
func ipOf(a netip.Addr) net.IP           { return net.IP(a.AsSlice()) }
func mustAddr(t testing.TB, ip net.IP) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		t.Fatalf("bad address %v", ip)
	}
	return a
}

// demoPlan compiles configs/demo.yaml.
func demoPlan(t testing.TB, dir string) *Plan {
	t.Helper()
	cfg, err := config.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := compile(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testZone is a small zone: 10.0.0.0/24, box at .1, pool .10-.15.
func testZone() ZonePlan {
	return ZonePlan{
		Name: "test", Device: "lan9", Server: addr("10.0.0.1"), Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		RangeStart: addr("10.0.0.10"), RangeEnd: addr("10.0.0.15"), LeaseTime: time.Hour,
		Domain: "test.lan", Router: addr("10.0.0.1"), DNS: []netip.Addr{addr("10.0.0.1")}, NTP: []netip.Addr{addr("10.0.0.1")},
	}
}

type harness struct {
	t     testing.TB
	clock *fakeClock
	h     *Handler
	store store
	m     *metrics
}

// testConfig is a handler configuration with these limits, no new-client
// budget and a write of the lease file at every change.
func testConfig(limits Limits) handlerConfig {
	return handlerConfig{limits: limits, budget: unlimitedBudget()}
}

func unlimitedBudget() Budget {
	return Budget{NewPerMinute: 1e9, NewBurst: 1e9, RetriesPerMinute: 1e9, RetryBurst: 1e9, FloodQuiet: time.Second}
}

func newHarness(t testing.TB, z ZonePlan, st store, limits Limits) *harness {
	t.Helper()
	return newHarnessWith(t, z, st, testConfig(limits))
}

func newHarnessWith(t testing.TB, z ZonePlan, st store, cfg handlerConfig) *harness {
	t.Helper()
	if st == nil {
		st = &memStore{}
	}
	c := newClock()
	m := newMetrics()
	h, problem := newHandler(discardLog(), z, st, m, cfg, c.now)
	if problem != nil {
		t.Fatalf("new handler: %v", problem)
	}
	return &harness{t: t, clock: c, h: h, store: st, m: m}
}

// send hands a message to the handler and decodes the reply, if any.
func (hs *harness) send(msg *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, netip.AddrPort) {
	hs.t.Helper()
	src := clientSrc
	if !msg.ClientIPAddr.IsUnspecified() && msg.ClientIPAddr != nil {
		a, _ := netip.AddrFromSlice(msg.ClientIPAddr.To4())
		src = netip.AddrPortFrom(a, 68)
	}
	r, ok := hs.h.Handle(msg.ToBytes(), src)
	hs.checkInvariants()
	if !ok {
		return nil, netip.AddrPort{}
	}
	resp, err := dhcpv4.FromBytes(r.Data)
	if err != nil {
		hs.t.Fatalf("reply does not parse: %v", err)
	}
	return resp, r.Dst
}

func (hs *harness) checkInvariants() {
	hs.t.Helper()
	if err := hs.h.t.check(hs.clock.now()); err != nil {
		hs.t.Fatalf("lease table invariant broken: %v", err)
	}
}

// dora runs DISCOVER/OFFER/REQUEST/ACK for hw; ack is nil when no address
// was offered.
func (hs *harness) dora(hw net.HardwareAddr, mods ...dhcpv4.Modifier) (offer, ack *dhcpv4.DHCPv4) {
	hs.t.Helper()
	d, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		hs.t.Fatal(err)
	}
	offer, _ = hs.send(d)
	if offer == nil {
		return nil, nil
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		hs.t.Fatalf("DISCOVER answered with %s", offer.MessageType())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		hs.t.Fatal(err)
	}
	ack, _ = hs.send(req)
	return offer, ack
}

func (hs *harness) mustLease(hw net.HardwareAddr) netip.Addr {
	hs.t.Helper()
	_, ack := hs.dora(hw)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		hs.t.Fatalf("%s got no lease (ack %v)", hw, ack)
	}
	return mustAddr(hs.t, ack.YourIPAddr)
}
