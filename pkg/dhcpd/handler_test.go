package dhcpd

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

func TestLeaseCarriesTheZoneOptions(t *testing.T) {
	p := demoPlan(t, t.TempDir())
	for _, z := range p.Zones {
		t.Run(z.Name, func(t *testing.T) {
			hs := newHarness(t, z, nil, unlimited())
			offer, ack := hs.dora(mac(1), dhcpv4.WithOption(dhcpv4.OptHostName("tablette-12")))
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("no ACK: %v", ack)
			}
			got := mustAddr(t, ack.YourIPAddr)
			if got != mustAddr(t, offer.YourIPAddr) || !z.inRange(got) {
				t.Errorf("ACKed %s, offered %s, pool %s-%s", got, offer.YourIPAddr, z.RangeStart, z.RangeEnd)
			}
			want := ipOf(z.Server)
			opts := map[string][]net.IP{"router": ack.Router(), "dns": ack.DNS(), "ntp": ack.NTPServers()}
			if z.Name == "guest" {
				if len(opts["ntp"]) != 0 {
					t.Errorf("guest zone offered NTP %v", opts["ntp"])
				}
				delete(opts, "ntp")
			}
			for name, v := range opts {
				if len(v) != 1 || !v[0].Equal(want) {
					t.Errorf("%s option = %v, want %v", name, v, want)
				}
			}
			if !ack.ServerIdentifier().Equal(want) {
				t.Errorf("server identifier %v, want %v", ack.ServerIdentifier(), want)
			}
			if ack.DomainName() != z.Domain || !strings.HasSuffix(z.Domain, ".home.arpa") {
				t.Errorf("domain %q, want %q", ack.DomainName(), z.Domain)
			}
			wantLease := 12 * time.Hour
			if z.Name == "guest" {
				wantLease = 2 * time.Hour // phones come and go
			}
			// The first lease is short; the client's next request gets the
			// zone's lease time.
			if lt := ack.IPAddressLeaseTime(0); lt != firstLease {
				t.Errorf("first lease time %s, want %s", lt, firstLease)
			}
			if _, again := hs.dora(mac(1)); again == nil || again.IPAddressLeaseTime(0) != wantLease {
				t.Errorf("lease time at the second request: %v, want %s", again, wantLease)
			}
			if ones, _ := ack.SubnetMask().Size(); ones != 24 {
				t.Errorf("mask /%d", ones)
			}
			if l, _ := hs.h.t.lookup(hw6(mac(1))); l.Hostname != "tablette-12" {
				t.Errorf("hostname %q not recorded", l.Hostname)
			}
		})
	}
}

func TestRepliesGoWhereTheClientCanHearThem(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	d, _ := dhcpv4.NewDiscovery(mac(1))
	_, dst := hs.send(d)
	if dst != broadcastDst {
		t.Errorf("OFFER to a client without an address sent to %s, want broadcast", dst)
	}
	_, ack := hs.dora(mac(1))
	renew, _ := dhcpv4.NewRenewFromAck(ack)
	resp, dst := hs.send(renew)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal not ACKed: %v", resp)
	}
	if want := netip.AddrPortFrom(mustAddr(t, ack.YourIPAddr), 68); dst != want {
		t.Errorf("renewal ACK sent to %s, want unicast %s", dst, want)
	}
}

func TestSameClientGetsItsAddressBack(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	first := hs.mustLease(mac(1))
	other := hs.mustLease(mac(2))
	if again := hs.mustLease(mac(1)); again != first {
		t.Errorf("second DORA gave %s, first %s", again, first)
	}
	// After a release.
	_, ack := hs.dora(mac(1))
	rel, _ := dhcpv4.NewReleaseFromACK(ack)
	hs.send(rel)
	if n := hs.h.t.inUse(hs.clock.now()); n != 1 {
		t.Errorf("in use after release = %d, want 1", n)
	}
	if again := hs.mustLease(mac(1)); again != first {
		t.Errorf("after release got %s, want %s", again, first)
	}
	// After expiry, while other clients took never-used addresses.
	hs.clock.add(2 * time.Hour)
	hs.mustLease(mac(3))
	if again := hs.mustLease(mac(1)); again != first {
		t.Errorf("after expiry got %s, want %s", again, first)
	}
	if again := hs.mustLease(mac(2)); again != other {
		t.Errorf("client 2 after expiry got %s, want %s", again, other)
	}
}

// TestTwoThousandRandomClientsExhaustThenReclaim is the random-MAC phone
// scenario: a small pool is exhausted, every extra client is counted and
// refused, and once the leases expire new clients get the reclaimed
// addresses.
func TestTwoThousandRandomClientsExhaustThenReclaim(t *testing.T) {
	const clients = 2000
	z := testZone()
	z.LeaseTime = 2 * time.Hour
	pool := z.PoolSize()
	hs := newHarness(t, z, nil, unlimited())
	reg := prometheus.NewRegistry()
	warn := health.New(hs.clock.now)
	srv := New(box.Deps{Log: discardLog(), Metrics: reg, Now: hs.clock.now, Health: warn}, Options{})
	srv.m = hs.m
	srv.handlers[z.Name] = hs.h

	rng := rand.New(rand.NewPCG(7, 7))
	randomMAC := func() net.HardwareAddr {
		m := make(net.HardwareAddr, 6)
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		m[0] = m[0]&^1 | 2 // unicast, locally administered: what phones use
		return m
	}
	given := map[netip.Addr]bool{}
	got := 0
	for range clients {
		hs.clock.add(10 * time.Millisecond)
		if _, ack := hs.dora(randomMAC()); ack != nil {
			got++
			given[mustAddr(t, ack.YourIPAddr)] = true
		}
	}
	if got != pool || len(given) != pool {
		t.Fatalf("%d clients served with %d distinct addresses, want the pool's %d", got, len(given), pool)
	}
	exhausted := testutil.ToFloat64(hs.m.exhausted.WithLabelValues(z.Name))
	if exhausted != clients-float64(pool) {
		t.Errorf("exhaustion events = %v, want %d", exhausted, clients-pool)
	}
	srv.checkHealth()
	if w, ok := warn.Get("dhcp-pool-full:test"); !ok || w.Severity != health.Warn {
		t.Errorf("no pool warning with a full pool: %v", warn.List())
	}
	if err := testutil.CollectAndCompare(srv, strings.NewReader(`
# HELP passerelle_dhcp_leases_in_use Pool addresses held now: live leases, pending offers and declined addresses.
# TYPE passerelle_dhcp_leases_in_use gauge
passerelle_dhcp_leases_in_use{zone="test"} 6
# HELP passerelle_dhcp_pool_size Addresses the zone's DHCP pool hands out dynamically (range without reservations).
# TYPE passerelle_dhcp_pool_size gauge
passerelle_dhcp_pool_size{zone="test"} 6
`), "passerelle_dhcp_leases_in_use", "passerelle_dhcp_pool_size"); err != nil {
		t.Error(err)
	}

	hs.clock.add(z.LeaseTime)
	got = 0
	for range clients {
		hs.clock.add(10 * time.Millisecond)
		if _, ack := hs.dora(randomMAC()); ack != nil {
			got++
			if a := mustAddr(t, ack.YourIPAddr); !given[a] {
				t.Fatalf("reclaimed pool handed out %s, outside the pool", a)
			}
		}
	}
	if got != pool {
		t.Errorf("after expiry %d new clients served, want %d", got, pool)
	}
	hs.clock.add(3 * z.LeaseTime)
	srv.checkHealth()
	if _, ok := warn.Get("dhcp-pool-full:test"); ok {
		t.Error("pool warning still raised once every lease expired")
	}
}

func TestExpiredLeasesAreReclaimedOldestFirstOnlyWhenNoFreshAddressIsLeft(t *testing.T) {
	z := testZone()
	hs := newHarness(t, z, nil, unlimited())
	a1 := hs.mustLease(mac(1))
	hs.clock.add(time.Minute)
	hs.mustLease(mac(2))
	hs.clock.add(2 * time.Hour) // both expired
	for i := 3; i < 3+z.PoolSize()-2; i++ {
		if a := hs.mustLease(mac(i)); a == a1 {
			t.Fatalf("client %d took expired %s while never-used addresses were left", i, a)
		}
	}
	if a := hs.mustLease(mac(100)); a != a1 {
		t.Errorf("reclaimed %s, want the oldest expired %s", a, a1)
	}
}

func TestReservedMACAlwaysGetsItsAddress(t *testing.T) {
	z := testZone()
	reserved := addr("10.0.0.12") // inside the pool
	printer := mac(0x42)
	z.Reserved = []Reservation{{MAC: hw6(printer), Addr: reserved, Name: "printer-cdi"}}
	hs := newHarness(t, z, nil, unlimited())
	for i := 1; i <= 10; i++ {
		if _, ack := hs.dora(mac(i)); ack != nil && mustAddr(t, ack.YourIPAddr) == reserved {
			t.Fatalf("client %d got the reserved %s", i, reserved)
		}
	}
	for range 3 {
		if a := hs.mustLease(printer); a != reserved {
			t.Fatalf("reserved device got %s, want %s", a, reserved)
		}
		hs.clock.add(3 * time.Hour)
	}
	// A device asking for another address is refused.
	req, _ := dhcpv4.NewDiscovery(printer)
	req.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 13)))
	if resp, _ := hs.send(req); resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("reserved device asking for another address: %v, want NAK", resp)
	}
}

func TestNewReservationRevokesAnotherClientsLease(t *testing.T) {
	z := testZone()
	hs := newHarness(t, z, nil, unlimited())
	_, ack := hs.dora(mac(1))
	taken := mustAddr(t, ack.YourIPAddr)
	z.Reserved = []Reservation{{MAC: hw6(mac(9)), Addr: taken}}
	hs.h.update(z)
	hs.checkInvariants()
	renew, _ := dhcpv4.NewRenewFromAck(ack)
	if resp, _ := hs.send(renew); resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("renewal of an address now reserved for another device: %v, want NAK", resp)
	}
	if a := hs.mustLease(mac(9)); a != taken {
		t.Errorf("reserved device got %s, want %s", a, taken)
	}
}

func TestRequestsTheServerMustRefuseOrIgnore(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	hs.mustLease(mac(1))
	a2 := hs.mustLease(mac(2))

	// INIT-REBOOT for another client's address: NAK.
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(a2))))
	if resp, _ := hs.send(req); resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for another client's address: %v, want NAK", resp)
	}
	// A laptop coming from another network: NAK so it starts over.
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 20)))
	if resp, dst := hs.send(req); resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak || dst != broadcastDst {
		t.Errorf("request from another network: %v to %s, want broadcast NAK", resp, dst)
	}
	// The client chose another server's offer: silence, and our offer is
	// released.
	d, _ := dhcpv4.NewDiscovery(mac(3))
	offer, _ := hs.send(d)
	sel, _ := dhcpv4.NewRequestFromOffer(offer)
	sel.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 254)))
	if resp, _ := hs.send(sel); resp != nil {
		t.Errorf("request for another server answered: %v", resp)
	}
	if _, ok := hs.h.t.offers[hw6(mac(3))]; ok {
		t.Error("offer kept after the client chose another server")
	}
	// A release for an address the client does not hold changes nothing.
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(3)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ipOf(a2)))
	hs.send(rel)
	if l, _ := hs.h.t.lookup(hw6(mac(2))); !l.live(hs.clock.now()) {
		t.Error("a client released another client's lease")
	}
}

func TestInformGetsOptionsWithoutLease(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	inf, _ := dhcpv4.NewInform(mac(1), net.IPv4(10, 0, 0, 200))
	resp, dst := hs.send(inf)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM: %v", resp)
	}
	if !resp.YourIPAddr.IsUnspecified() || resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("INFORM's ACK carries a lease: yiaddr %v", resp.YourIPAddr)
	}
	if dst != netip.MustParseAddrPort("10.0.0.200:68") {
		t.Errorf("INFORM's ACK sent to %s", dst)
	}
	if len(hs.h.t.byAddr) != 0 {
		t.Error("INFORM created a lease")
	}
}

func TestDeclineQuarantinesTheAddress(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	a := hs.mustLease(mac(1))
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(a))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
	hs.send(dec)
	if b := hs.mustLease(mac(1)); b == a {
		t.Fatalf("declined %s handed out again at once", a)
	}
	// A client cannot decline someone else's address.
	b := hs.mustLease(mac(2))
	dec2, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(3)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(b))))
	hs.send(dec2)
	if l, _ := hs.h.t.lookup(hw6(mac(2))); l == nil || l.Addr != b || !l.live(hs.clock.now()) {
		t.Error("a client declined another client's address")
	}
}

func TestFloodFromOneMACIsRateLimited(t *testing.T) {
	hs := newHarness(t, testZone(), nil, DefaultLimits)
	d, _ := dhcpv4.NewDiscovery(mac(1))
	answered := 0
	for range 1000 {
		if r, _ := hs.send(d); r != nil {
			answered++
		}
	}
	if answered > int(DefaultLimits.ClientBurst) {
		t.Errorf("%d of 1000 answered from one MAC in an instant, want at most %v", answered, DefaultLimits.ClientBurst)
	}
	if got := testutil.ToFloat64(hs.m.dropped.WithLabelValues("test", "rate_limited")); got != float64(1000-answered) {
		t.Errorf("rate_limited drops = %v, want %d", got, 1000-answered)
	}
	if _, ack := hs.dora(mac(2)); ack == nil {
		t.Error("another client was starved by the flood")
	}
	hs.clock.add(10 * time.Second)
	if r, _ := hs.send(d); r == nil {
		t.Error("the flooding client is still refused after it stopped")
	}
}

func TestMalformedPacketsAreDroppedAndCounted(t *testing.T) {
	hs := newHarness(t, testZone(), nil, unlimited())
	good, _ := dhcpv4.NewDiscovery(mac(1))
	withOpt := func(code uint8, v []byte) []byte {
		b := good.ToBytes()
		b = b[:240]
		b = append(b, 53, 1, 1, code, byte(len(v)))
		b = append(b, v...)
		return append(b, 255)
	}
	reply, _ := dhcpv4.NewReplyFromRequest(good, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	relayed := *good
	relayed.GatewayIPAddr = net.IPv4(10, 9, 9, 9)
	bcastMAC, _ := dhcpv4.NewDiscovery(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	cases := map[string]struct {
		pkt    []byte
		reason string
	}{
		"empty":                {nil, "bad_length"},
		"truncated header":     {good.ToBytes()[:100], "bad_length"},
		"bad cookie":           {append(append([]byte{}, good.ToBytes()[:236]...), 1, 2, 3, 4, 255), "malformed"},
		"option past the end":  {append(good.ToBytes()[:240], 53, 1, 1, 12, 200, 'x'), "malformed"},
		"no end option":        {append(good.ToBytes()[:240], 53, 1, 1), "malformed"},
		"long message type":    {withOpt(53, []byte{1, 1}), "bad_option"},
		"short requested addr": {withOpt(50, []byte{10, 0}), "bad_option"},
		"a reply":              {reply.ToBytes(), "not_a_request"},
		"relayed":              {relayed.ToBytes(), "relayed"},
		"broadcast chaddr":     {bcastMAC.ToBytes(), "bad_hardware_address"},
		"oversized":            {make([]byte, 2000), "bad_length"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := testutil.ToFloat64(hs.m.dropped.WithLabelValues("test", c.reason))
			if _, ok := hs.h.Handle(c.pkt, clientSrc); ok {
				t.Fatal("answered")
			}
			hs.checkInvariants()
			if after := testutil.ToFloat64(hs.m.dropped.WithLabelValues("test", c.reason)); after != before+1 {
				t.Errorf("dropped{reason=%s} went %v -> %v", c.reason, before, after)
			}
		})
	}
	if len(hs.h.t.byAddr) != 0 || len(hs.h.t.offers) != 0 {
		t.Error("a dropped packet changed the lease table")
	}
}

// TestLeasesSurviveARestart reloads the lease file into a new handler (the
// daemon restarted) and renews every client.
func TestLeasesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	z := testZone()
	st := fileStore{path: filepath.Join(dir, "test.json")}
	hs := newHarness(t, z, st, unlimited())
	leases := map[int]netip.Addr{}
	acks := map[int]*dhcpv4.DHCPv4{}
	for i := 1; i <= 4; i++ {
		_, ack := hs.dora(mac(i))
		leases[i], acks[i] = mustAddr(t, ack.YourIPAddr), ack
	}
	rel, _ := dhcpv4.NewReleaseFromACK(acks[4])
	hs.send(rel)

	h2, problem := newHandler(discardLog(), z, st, newMetrics(), testConfig(unlimited()), hs.clock.now)
	if problem != nil {
		t.Fatal(problem)
	}
	if got, want := h2.t.records(), hs.h.t.records(); len(got) != len(want) {
		t.Fatalf("reloaded %d records, had %d", len(got), len(want))
	} else {
		for i := range got {
			if stored(got[i]) != stored(want[i]) {
				t.Errorf("record %d: reloaded %+v, had %+v", i, got[i], want[i])
			}
		}
	}
	hs.h = h2
	hs.clock.add(30 * time.Minute)
	for i := 1; i <= 3; i++ {
		renew, _ := dhcpv4.NewRenewFromAck(acks[i])
		resp, _ := hs.send(renew)
		if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck || mustAddr(t, resp.YourIPAddr) != leases[i] {
			t.Errorf("client %d renewing %s after the restart: %v", i, leases[i], resp)
		}
	}
	// A new client gets none of them, and the released one goes back to its owner.
	if a := hs.mustLease(mac(10)); a == leases[1] || a == leases[2] || a == leases[3] || a == leases[4] {
		t.Errorf("new client got %s, which belongs to an earlier client", a)
	}
	if a := hs.mustLease(mac(4)); a != leases[4] {
		t.Errorf("released client got %s back, want %s", a, leases[4])
	}
}

func TestUnreadableLeaseFileIsSetAsideNotTrusted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "test.json")
	for name, content := range map[string]string{
		"garbage":      "{not json",
		"other zone":   `{"version":1,"zone":"peda","leases":[]}`,
		"bad address":  `{"version":1,"zone":"test","leases":[{"address":"10.0.0.300","mac":"02:00:00:00:00:01","expires":"2026-09-01T09:00:00Z"}]}`,
		"unknown key":  `{"version":1,"zone":"test","leases":[],"extra":1}`,
		"next version": `{"version":2,"zone":"test","leases":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			c := newClock()
			h, problem := newHandler(discardLog(), testZone(), fileStore{path: path}, newMetrics(), testConfig(unlimited()), c.now)
			if problem == nil {
				t.Fatal("no problem reported")
			}
			if len(h.t.byAddr) != 0 {
				t.Error("records loaded from an unreadable file")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Error("unreadable file left in place, to be overwritten")
			}
			kept, _ := filepath.Glob(path + ".bad-*")
			if len(kept) != 1 {
				t.Errorf("set-aside copies: %v", kept)
			}
			for _, k := range kept {
				os.Remove(k)
			}
		})
	}
}

func TestLoadDropsLeasesTheConfigNoLongerAllows(t *testing.T) {
	z := testZone()
	exp := time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC)
	st := &memStore{}
	data, _ := encodeLeases("test", []lease{
		{Addr: addr("10.0.0.10"), MAC: hw6(mac(1)), Expiry: exp},
		{Addr: addr("10.0.0.99"), MAC: hw6(mac(2)), Expiry: exp},                // outside the pool now
		{Addr: addr("10.0.0.11"), MAC: hw6(mac(1)), Expiry: exp.Add(time.Hour)}, // same client twice: later wins
		{Addr: addr("10.0.0.1"), MAC: hw6(mac(3)), Expiry: exp},                 // the box's own address
	})
	st.Save(data)
	c := newClock()
	h, problem := newHandler(discardLog(), z, st, newMetrics(), testConfig(unlimited()), c.now)
	if problem != nil {
		t.Fatal(problem)
	}
	if err := h.t.check(c.now()); err != nil {
		t.Fatal(err)
	}
	recs := h.t.records()
	if len(recs) != 1 || recs[0].Addr != addr("10.0.0.11") {
		t.Errorf("loaded %+v, want only 10.0.0.11", recs)
	}
}

// stored is what the lease file keeps of a record.
func stored(l lease) lease {
	return lease{Addr: l.Addr, MAC: l.MAC, Hostname: l.Hostname, Expiry: l.Expiry, Declined: l.Declined}
}
