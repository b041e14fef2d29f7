package dhcpd

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
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

// These tests cover the defences of issue 12 (starvation by random
// hardware addresses, lease-file privacy and writes).

func randomMACs(seed uint64) func() net.HardwareAddr {
	rng := rand.New(rand.NewPCG(seed, seed))
	return func() net.HardwareAddr {
		m := make(net.HardwareAddr, 6)
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		m[0] = m[0]&^1 | 2
		return m
	}
}

func TestFirstLeaseIsShortAndGrowsOnRenewal(t *testing.T) {
	z := testZone()
	z.LeaseTime = 12 * time.Hour
	hs := newHarness(t, z, nil, unlimited())
	offer, ack := hs.dora(mac(1))
	if lt := offer.IPAddressLeaseTime(0); lt != firstLease {
		t.Errorf("OFFER to a new client announces %s, want %s", lt, firstLease)
	}
	if lt := ack.IPAddressLeaseTime(0); lt != firstLease {
		t.Fatalf("first ACK: lease %s, want %s", lt, firstLease)
	}
	if t1 := ack.IPAddressRenewalTime(0); t1 != firstLease/2 {
		t.Errorf("first ACK: renewal at %s, want %s", t1, firstLease/2)
	}
	hs.clock.add(firstLease / 2)
	renew, _ := dhcpv4.NewRenewFromAck(ack)
	resp, _ := hs.send(renew)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck || resp.IPAddressLeaseTime(0) != z.LeaseTime {
		t.Fatalf("renewal: %v, want an ACK of %s", resp, z.LeaseTime)
	}
	if l, _ := hs.h.t.lookup(hw6(mac(1))); !l.Renewed || !l.Expiry.Equal(hs.clock.now().Add(z.LeaseTime)) {
		t.Errorf("record after renewal: %+v", l)
	}
	// A device that comes back the next day gets the full lease at once.
	hs.clock.add(24 * time.Hour)
	if offer, ack := hs.dora(mac(1)); offer.IPAddressLeaseTime(0) != z.LeaseTime || ack.IPAddressLeaseTime(0) != z.LeaseTime {
		t.Errorf("returning device: offered %s, acknowledged %s, want %s", offer.IPAddressLeaseTime(0), ack.IPAddressLeaseTime(0), z.LeaseTime)
	}
	// A reserved device is known: full lease from the first ACK.
	z.Reserved = []Reservation{{MAC: hw6(mac(9)), Addr: addr("10.0.0.15")}}
	hs.h.update(z)
	if _, ack := hs.dora(mac(9)); ack.IPAddressLeaseTime(0) != z.LeaseTime {
		t.Errorf("reserved device: first lease %s, want %s", ack.IPAddressLeaseTime(0), z.LeaseTime)
	}
	// A zone whose lease time is shorter than firstLease keeps it.
	z.LeaseTime = 5 * time.Minute
	hs.h.update(z)
	if _, ack := hs.dora(mac(2)); ack.IPAddressLeaseTime(0) != z.LeaseTime {
		t.Errorf("short zone lease: %s, want %s", ack.IPAddressLeaseTime(0), z.LeaseTime)
	}
}

// TestOfferHoldExpires: DISCOVERs alone hold an address for offerHold
// only, after which another client may have it.
func TestOfferHoldExpires(t *testing.T) {
	z := testZone()
	z.RangeEnd = z.RangeStart // one address
	hs := newHarness(t, z, nil, unlimited())
	d1, _ := dhcpv4.NewDiscovery(mac(1))
	if o, _ := hs.send(d1); o == nil {
		t.Fatal("no offer")
	}
	d2, _ := dhcpv4.NewDiscovery(mac(2))
	if o, _ := hs.send(d2); o != nil {
		t.Fatalf("the one address offered twice within the hold: %v", o.YourIPAddr)
	}
	if n := hs.h.t.inUse(hs.clock.now()); n != 1 {
		t.Errorf("in use with a pending offer: %d, want 1", n)
	}
	hs.clock.add(offerHold)
	if n := hs.h.t.inUse(hs.clock.now()); n != 0 {
		t.Errorf("in use after the hold: %d, want 0", n)
	}
	if o, _ := hs.send(d2); o == nil || mustAddr(t, o.YourIPAddr) != z.RangeStart {
		t.Fatalf("address not offered to another client after the hold: %v", o)
	}
	if offerHold > 10*time.Second {
		t.Errorf("offer hold %s: DISCOVERs alone would hold the pool", offerHold)
	}
}

func budgetConfig(b Budget) handlerConfig {
	return handlerConfig{limits: unlimited(), budget: b}
}

// TestNewClientBudget: beyond the budget new clients are ignored, known
// ones always served, a retrying new client admitted, and the flood ends
// after FloodQuiet.
func TestNewClientBudget(t *testing.T) {
	z := testZone()
	z.RangeEnd = addr("10.0.0.250")
	b := Budget{NewPerMinute: 6, NewBurst: 5, RetriesPerMinute: 6, RetryBurst: 2, FloodQuiet: time.Minute}
	hs := newHarnessWith(t, z, nil, budgetConfig(b))
	var alerts int
	hs.h.alert = func() { alerts++ }
	_, known := hs.dora(mac(1)) // a known client, before the flood
	random := randomMACs(1)
	served := 1
	for range 200 { // 20 a second for 10 s
		hs.clock.add(50 * time.Millisecond)
		if _, ack := hs.dora(random()); ack != nil {
			served++
		}
	}
	if want := int(b.NewBurst) + 1; served > want {
		t.Errorf("%d new clients served during the flood, want at most %d", served-1, want-1)
	}
	if alerts != 1 {
		t.Errorf("flood alerts: %d, want 1", alerts)
	}
	if _, _, on := hs.h.flood(); !on {
		t.Error("no flood reported")
	}
	if got := testutil.ToFloat64(hs.m.dropped.WithLabelValues("test", "new_client_budget")); got < 190 {
		t.Errorf("new_client_budget drops: %v", got)
	}
	// Known clients and renewals are always served.
	renew, _ := dhcpv4.NewRenewFromAck(known)
	if resp, _ := hs.send(renew); resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("renewal during the flood: %v", resp)
	}
	if _, ack := hs.dora(mac(1)); ack == nil {
		t.Error("known client refused during the flood")
	}
	// A new device is ignored once, then served when it retries (RFC 2131:
	// about 4 s later), while the flood goes on.
	legit := mac(0x4c)
	d, _ := dhcpv4.NewDiscovery(legit)
	if o, _ := hs.send(d); o != nil {
		t.Error("new device served at once during the flood")
	}
	hs.clock.add(50 * time.Millisecond)
	hs.dora(random())
	hs.clock.add(4 * time.Second)
	if _, ack := hs.dora(legit); ack == nil {
		t.Fatal("new device not served when it retried during the flood")
	}
	// A flood tool repeating a packet at once is no retry.
	again := random()
	hs.dora(again)
	if _, ack := hs.dora(again); ack != nil {
		t.Error("an immediate repeat was admitted as a retry")
	}
	// The flood stops; a minute later new clients are served at once again.
	hs.clock.add(b.FloodQuiet)
	if _, _, on := hs.h.flood(); on {
		t.Error("flood still reported a minute after it stopped")
	}
	if _, ack := hs.dora(mac(0x4d)); ack == nil {
		t.Error("new device not served after the flood")
	}
}

// fakeProber answers for the addresses in up.
type fakeProber struct {
	up    map[netip.Addr]bool
	asked []netip.Addr
}

func (p *fakeProber) Probe(_ context.Context, addrs []netip.Addr) (map[netip.Addr]bool, error) {
	p.asked = append(p.asked, addrs...)
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if p.up[a] {
			out[a] = true
		}
	}
	return out, nil
}

// TestARPSilentLeasesAreReclaimedFirst: when no never-used address is
// left, a live lease that never answered ARP and was never renewed is
// reclaimed, before expired records of real clients; leases that
// answered, or were renewed, are not.
func TestARPSilentLeasesAreReclaimedFirst(t *testing.T) {
	z := testZone() // 6 addresses
	z.LeaseTime = 12 * time.Hour
	hs := newHarness(t, z, nil, unlimited())
	p := &fakeProber{up: map[netip.Addr]bool{}}
	ctx := context.Background()

	gone := hs.mustLease(mac(1)) // a real client that left: its lease expires
	hs.clock.add(firstLease + time.Minute)
	real := hs.mustLease(mac(2)) // answers ARP
	p.up[real] = true
	_, ack := hs.dora(mac(3)) // renews but does not answer ARP (firewalled)
	renewed := mustAddr(t, ack.YourIPAddr)
	var silent []netip.Addr
	for i := 10; i < 13; i++ { // flood leases
		silent = append(silent, hs.mustLease(mac(i)))
	}
	if err := hs.h.probeRound(ctx, p); err != nil || len(p.asked) != 0 {
		t.Fatalf("probed before probeAfter: %v %v", p.asked, err)
	}
	hs.clock.add(firstLease / 2)
	r, _ := dhcpv4.NewRenewFromAck(ack)
	hs.send(r)
	hs.clock.add(probeAfter - firstLease/2 + time.Second)
	for range silentProbes {
		if err := hs.h.probeRound(ctx, p); err != nil {
			t.Fatal(err)
		}
		hs.clock.add(probeEvery)
	}
	for _, a := range p.asked {
		if a == renewed || a == gone {
			t.Errorf("probed %s (renewed or expired)", a)
		}
	}
	if n := len(p.asked); n != silentProbes*3+1 {
		t.Errorf("%d probes (%v), want %d: the answering address once, each silent one %d times", n, p.asked, silentProbes*3+1, silentProbes)
	}
	// The pool is full (gone's record is expired): new clients take the
	// silent leases, oldest first, then gone's address.
	var got []netip.Addr
	for i := 20; i < 24; i++ {
		got = append(got, hs.mustLease(mac(i)))
	}
	want := append(append([]netip.Addr{}, silent...), gone)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("new clients got %v, want %v (silent leases first, then the expired one)", got, want)
		}
	}
	if _, ack := hs.dora(mac(30)); ack != nil {
		t.Errorf("a live lease that answered or renewed was reclaimed: %v", ack.YourIPAddr)
	}
	if n := testutil.ToFloat64(hs.m.reclaimedSilent.WithLabelValues("test")); n != 3 {
		t.Errorf("reclaimed_silent = %v, want 3", n)
	}
	if l, _ := hs.h.t.lookup(hw6(mac(10))); l != nil {
		t.Error("the flood client keeps a record of its reclaimed address")
	}
}

// TestLeaseFileModeAndRetention: the file is 0600 in a 0700 directory
// (an earlier 0644 file is closed at load), and records are deleted
// recordRetention after their lease ended.
func TestLeaseFileModeAndRetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dhcp")
	path := filepath.Join(dir, "test.json")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	old, _ := encodeLeases("test", []lease{
		{Addr: addr("10.0.0.10"), MAC: hw6(mac(1)), Hostname: "iPhone-de-Lea", Expiry: clock.now().Add(-recordRetention - time.Hour)},
		{Addr: addr("10.0.0.11"), MAC: hw6(mac(2)), Expiry: clock.now().Add(-24 * time.Hour)},
	})
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	h, problem := newHandler(discardLog(), testZone(), fileStore{path: path}, newMetrics(), testConfig(unlimited()), clock.now)
	if problem != nil {
		t.Fatal(problem)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "iPhone-de-Lea") || len(h.t.records()) != 1 {
		t.Errorf("record past its retention kept at load: %s", data)
	}
	hs := &harness{t: t, clock: clock, h: h, store: fileStore{path: path}, m: h.m}
	hs.mustLease(mac(3))
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten file mode %v", fi.Mode().Perm())
	}
	// Client 2's record goes 7 days after its lease ended, client 3's
	// 7 days after its own.
	clock.add(recordRetention - 24*time.Hour + time.Minute)
	h.maintain()
	if recs := h.t.records(); len(recs) != 1 || recs[0].MAC != hw6(mac(3)) {
		t.Errorf("after client 2's retention: %+v", recs)
	}
	clock.add(24*time.Hour + firstLease)
	h.maintain()
	if recs := h.t.records(); len(recs) != 0 {
		t.Errorf("after every retention: %+v", recs)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "02:00:00:00:00") {
		t.Errorf("lease file still holds hardware addresses: %s", data)
	}
}

// TestLeaseFileWritesAreBatched: at most one write per saveEvery, the
// rest at the end of the delay or by Flush (shutdown).
func TestLeaseFileWritesAreBatched(t *testing.T) {
	st := &memStore{}
	var scheduled []time.Duration
	cfg := testConfig(unlimited())
	cfg.saveEvery = 5 * time.Second
	cfg.schedule = func(d time.Duration, f func()) { scheduled = append(scheduled, d) }
	hs := newHarnessWith(t, testZone(), st, cfg)
	hs.mustLease(mac(1))
	if st.saves != 1 {
		t.Fatalf("first change: %d writes, want 1 at once", st.saves)
	}
	hs.clock.add(time.Second)
	hs.mustLease(mac(2))
	hs.mustLease(mac(3))
	if st.saves != 1 || len(scheduled) != 1 || scheduled[0] != 4*time.Second {
		t.Fatalf("changes within the delay: %d writes, scheduled %v; want 1 and one write in 4s", st.saves, scheduled)
	}
	hs.clock.add(4 * time.Second)
	hs.h.Flush()
	if st.saves != 2 {
		t.Fatalf("after the delay: %d writes, want 2", st.saves)
	}
	ls, _ := decodeLeases("test", st.data)
	if len(ls) != 3 {
		t.Errorf("the batched write holds %d leases, want 3", len(ls))
	}
	hs.h.Flush()
	if st.saves != 2 {
		t.Error("Flush wrote an unchanged table")
	}
}

// TestNoMACInWarnings runs the situations that log warnings (full pool,
// flood, decline, load problems) and checks that no hardware address
// appears in a record of level WARN or above.
func TestNoMACInWarnings(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	z := testZone()
	st := &memStore{}
	st.Save(mustEncode(t, "test", []lease{
		{Addr: addr("10.0.0.99"), MAC: hw6(mac(0x77)), Expiry: newClock().now().Add(time.Hour)}, // dropped at load
	}))
	clock := newClock()
	h, problem := newHandler(log, z, st, newMetrics(), budgetConfig(Budget{NewPerMinute: 6, NewBurst: 20, RetriesPerMinute: 6, RetryBurst: 2, FloodQuiet: time.Minute}), clock.now)
	if problem != nil {
		t.Fatal(problem)
	}
	hs := &harness{t: t, clock: clock, h: h, store: st, m: h.m}
	var macs []net.HardwareAddr
	random := randomMACs(3)
	for range 40 {
		m := random()
		macs = append(macs, m)
		hs.clock.add(10 * time.Millisecond)
		hs.dora(m)
	}
	hs.clock.add(firstLease + time.Minute) // the flood's first leases end
	a := hs.mustLease(mac(5))
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(5)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(a))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
	hs.send(dec)
	macs = append(macs, mac(5), mac(0x77))

	warnings := 0
	for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) != nil {
			continue
		}
		if lvl := r["level"]; lvl != "WARN" && lvl != "ERROR" {
			continue
		}
		warnings++
		low := strings.ToLower(string(line))
		for _, m := range macs {
			for _, form := range []string{m.String(), strings.ReplaceAll(m.String(), ":", ""), strings.ReplaceAll(m.String(), ":", "-")} {
				if strings.Contains(low, form) {
					t.Errorf("hardware address %s in a warning: %s", m, line)
				}
			}
		}
	}
	if warnings < 3 {
		t.Errorf("%d warnings logged, want the full pool, the flood, the decline and the load problem:\n%s", warnings, buf.String())
	}
}

func mustEncode(t *testing.T, zone string, ls []lease) []byte {
	t.Helper()
	b, err := encodeLeases(zone, ls)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStarvationWarningNamesTheZone: the server raises
// dhcp-starvation:<zone> during a flood and clears it after.
func TestStarvationWarningNamesTheZone(t *testing.T) {
	clock := newClock()
	warn := health.New(clock.now)
	dir := t.TempDir()
	s := New(box.Deps{Log: discardLog(), Metrics: prometheus.NewRegistry(), Health: warn, Now: clock.now},
		Options{LeaseDir: dir, Limits: unlimited(), SaveEvery: -1})
	if err := s.Apply(context.Background(), &Plan{LeaseDir: dir, Zones: []ZonePlan{testZone()}}); err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, clock: clock, h: s.handler("test")}
	random := randomMACs(9)
	for range 100 {
		clock.add(50 * time.Millisecond)
		hs.dora(random())
	}
	select {
	case <-s.changed:
	default:
		t.Error("the flood did not wake the server")
	}
	s.checkHealth()
	w, ok := warn.Get("dhcp-starvation:test")
	if !ok || w.Severity != health.Warn || !strings.Contains(w.Message, "Zone test") {
		t.Fatalf("starvation warning: %+v %v", w, ok)
	}
	if _, ok := warn.Get("dhcp-pool-full:test"); !ok {
		t.Log("pool not full") // 6 addresses, a burst of 60: it is full here
	}
	clock.add(DefaultBudget.FloodQuiet)
	s.checkHealth()
	if _, ok := warn.Get("dhcp-starvation:test"); ok {
		t.Error("starvation warning kept after the flood")
	}
}
