package uplink

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/dhcpclient"
	"passerelle/pkg/health"
	"passerelle/pkg/netmark"
)

// fakeSystem records what the manager asks of the kernel, as text.
type fakeSystem struct {
	mu     sync.Mutex
	calls  []string
	active string
	rx     map[string]uint64 // rx packets by interface
	dnsErr error
}

func (f *fakeSystem) addRx(ifname string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rx == nil {
		f.rx = map[string]uint64{}
	}
	f.rx[ifname] += n
}

func (f *fakeSystem) rxPackets(ifname string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rx[ifname], true
}

func (f *fakeSystem) resolveGateway(ifname string, gw netip.Addr) error {
	f.log("resolve %s %s", ifname, gw)
	return nil
}

func (f *fakeSystem) checkDNS(context.Context, Link, netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dnsErr
}

func (f *fakeSystem) log(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeSystem) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeSystem) syncRouting(p *Plan, gws map[int]netip.Addr) error {
	var parts []string
	for _, l := range p.Links {
		parts = append(parts, fmt.Sprintf("%d=%v", l.Table, gws[l.Index]))
	}
	f.log("sync %s", strings.Join(parts, " "))
	return nil
}

func (f *fakeSystem) setActive(p *Plan, sel selection, gws map[int]netip.Addr) error {
	var parts []string
	for _, m := range sel.Members {
		parts = append(parts, fmt.Sprintf("%s/%d", gws[m.Index], m.Weight))
	}
	f.mu.Lock()
	f.active = strings.Join(parts, " ")
	f.mu.Unlock()
	f.log("active %s", strings.Join(parts, " "))
	return nil
}

func (f *fakeSystem) flushConntrack(mark uint32, addr netip.Addr) (int, error) {
	f.log("flush %#x %v", mark, addr)
	return 0, nil
}

func (f *fakeSystem) setAddress(ifname string, old, want netip.Prefix, valid time.Duration) error {
	f.log("address %s %v -> %v", ifname, old, want)
	return nil
}

func (f *fakeSystem) watchCarrier(ctx context.Context, _ func() []string, _ func(string, bool, int)) {
	<-ctx.Done()
}
func (f *fakeSystem) linkStats(string) (uint64, uint64, bool) { return 1000, 2000, true }
func (f *fakeSystem) newProber(Link) (prober, error) {
	return nil, fmt.Errorf("no probes in this test")
}

func testConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoUplinks = `version: 1
identity: {uai: 0599999Y, name: Test, academy: lille}
uplinks:
  - name: renater
    interface: wan0
    address: 192.0.2.2/30
    gateway: 192.0.2.1
    probe: {targets: [203.0.113.10]}
  - name: backup
    interface: wan1
    priority: 2
    addressing: dhcp
    lease_file: /tmp/backup.lease
    probe: {targets: [203.0.113.10]}
zones:
  - {name: admin, kind: administrative, interfaces: [lan1], subnet: 10.20.0.0/24, address: 10.20.0.1}
`

func newTestManager(t *testing.T) (*Manager, *fakeSystem, *health.Registry, *prometheus.Registry) {
	t.Helper()
	fs := &fakeSystem{}
	h := health.New(func() time.Time { return t0 })
	reg := prometheus.NewRegistry()
	m := New(box.Deps{Metrics: reg, Health: h, Now: func() time.Time { return t0 }}, Options{sys: fs})
	p, err := m.Plan(testConfig(t, twoUplinks))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return m, fs, h, reg
}

func (m *Manager) link(name string) *link {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.links[name]
}

var dhcpLease = &dhcpclient.Lease{
	Address: netip.MustParsePrefix("100.64.1.10/24"), Gateway: netip.MustParseAddr("100.64.1.1"),
	Server: netip.MustParseAddr("100.64.1.1"), Acquired: t0, Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
}

func TestApplyInstallsRoutingBeforeProbing(t *testing.T) {
	_, fs, _, _ := newTestManager(t)
	want := []string{"sync 100=192.0.2.1 101=invalid IP", "active 192.0.2.1/1"}
	if got := fs.take(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestFailoverAndRecovery(t *testing.T) {
	m, fs, h, reg := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	renater := m.link("renater")
	for range 3 {
		m.roundDone(renater, failed())
	}
	want := []string{"active 100.64.1.1/1", "flush 0x100 192.0.2.2"}
	if got := fs.take(); !slices.Equal(got, want) {
		t.Fatalf("after 3 failed rounds: calls %q, want %q", got, want)
	}
	if _, ok := h.Get("uplink-offline:renater"); !ok {
		t.Error("no offline warning for renater")
	}
	if _, ok := h.Get("uplink-backup-in-use"); !ok {
		t.Error("no backup-in-use warning")
	}
	ev := m.Events()
	last := ev[len(ev)-1]
	if last.Kind != EventSwitch || !strings.HasPrefix(last.Message, "switched to backup at 10:42: renater lost 3 probe rounds in a row") {
		t.Errorf("last event %+v", last)
	}
	for range 4 {
		m.roundDone(renater, good(time.Millisecond))
	}
	if got := fs.take(); len(got) != 0 {
		t.Fatalf("switched back before up_after: %q", got)
	}
	m.roundDone(renater, good(time.Millisecond))
	if got := fs.take(); !slices.Equal(got, []string{"active 192.0.2.1/1"}) {
		t.Fatalf("recovery: calls %q; want the switch back and no flush of the backup's flows", got)
	}
	if _, ok := h.Get("uplink-backup-in-use"); ok {
		t.Error("backup-in-use warning still raised")
	}
	if n := testutil.CollectAndCount(reg, "passerelle_uplink_transitions_total"); n != 2 {
		t.Errorf("%d transition series, want one per uplink", n)
	}
}

func TestCarrierLossSwitchesAtOnce(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	m.carrierChanged("wan0", false, 0)
	want := []string{"active 100.64.1.1/1", "flush 0x100 192.0.2.2"}
	if got := fs.take(); !slices.Equal(got, want) {
		t.Fatalf("carrier loss: calls %q, want %q", got, want)
	}
	m.carrierChanged("wan0", true, 7)
	if got := fs.take(); slices.Contains(got, "active 192.0.2.1/1") {
		t.Fatalf("carrier back switched back at once (%q): it must wait for up_after rounds", got)
	}
}

func TestBothDownThenBackupBack(t *testing.T) {
	m, fs, h, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	renater, backup := m.link("renater"), m.link("backup")
	for range 3 {
		m.roundDone(renater, failed())
		m.roundDone(backup, failed())
	}
	if _, ok := h.Get("uplinks-all-offline"); !ok {
		t.Error("no critical warning with every uplink offline")
	}
	fs.take()
	for range 5 {
		m.roundDone(backup, good(time.Millisecond))
	}
	got := fs.take()
	if !slices.Contains(got, "active 100.64.1.1/1") {
		t.Fatalf("backup back: calls %q; want traffic on it", got)
	}
	// Flows sent to renater as a fallback while all were down carry its
	// mark: they must be deleted to move.
	if !slices.Contains(got, "flush 0x100 192.0.2.2") {
		t.Errorf("backup back: calls %q; want renater's connections deleted", got)
	}
}

func TestDHCPAddressChangeMovesRoutesAndFlushes(t *testing.T) {
	m, fs, _, reg := newTestManager(t)
	backup := m.link("backup")
	fs.take()
	m.leaseChanged(backup, 0, nil, dhcpLease)
	got := fs.take()
	want := []string{"address wan1 invalid Prefix -> 100.64.1.10/24", "sync 100=192.0.2.1 101=100.64.1.1", "active 192.0.2.1/1"}
	if !slices.Equal(got, want) {
		t.Fatalf("first lease: calls %q, want %q", got, want)
	}
	renewed := *dhcpLease
	renewed.Acquired = t0.Add(30 * time.Minute)
	m.leaseChanged(backup, 0, dhcpLease, &renewed)
	if got := fs.take(); !slices.Equal(got, []string{"address wan1 100.64.1.10/24 -> 100.64.1.10/24"}) {
		t.Fatalf("plain renewal: calls %q; only the address lifetime changes", got)
	}
	moved := renewed
	moved.Address = netip.MustParsePrefix("100.64.1.20/24")
	m.leaseChanged(backup, 0, &renewed, &moved)
	want = []string{"address wan1 100.64.1.10/24 -> 100.64.1.20/24", "sync 100=192.0.2.1 101=100.64.1.1", "active 192.0.2.1/1", "flush 0x200 100.64.1.10"}
	if got := fs.take(); !slices.Equal(got, want) {
		t.Fatalf("address change: calls %q, want %q", got, want)
	}
	const metric = `
# HELP passerelle_uplink_dhcp_lease_info The DHCP lease in effect on the uplink (value 1).
# TYPE passerelle_uplink_dhcp_lease_info gauge
passerelle_uplink_dhcp_lease_info{address="100.64.1.20/24",gateway="100.64.1.1",server="100.64.1.1",uplink="backup"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(metric), "passerelle_uplink_dhcp_lease_info"); err != nil {
		t.Error(err)
	}
}

func TestBalancedUplinksShareByWeight(t *testing.T) {
	fs := &fakeSystem{}
	m := New(box.Deps{Now: func() time.Time { return t0 }}, Options{sys: fs})
	cfg := testConfig(t, strings.Replace(strings.Replace(twoUplinks, "    priority: 2\n    addressing: dhcp\n    lease_file: /tmp/backup.lease\n",
		"    weight: 3\n    address: 192.0.2.6/30\n    gateway: 192.0.2.5\n", 1), "    interface: wan0\n", "    interface: wan0\n    weight: 1\n", 1))
	p, err := m.Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if fs.active != "192.0.2.1/1 192.0.2.5/3" {
		t.Errorf("TableActive = %q, want both gateways weighted 1 and 3", fs.active)
	}
	for range 3 {
		m.roundDone(m.link("backup"), failed())
	}
	if fs.active != "192.0.2.1/1" {
		t.Errorf("TableActive = %q after one balanced uplink failed", fs.active)
	}
}

func TestMarksFollowNetmark(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	for i, name := range []string{"renater", "backup"} {
		if mark, ok := m.Mark(name); !ok || mark != netmark.Uplink(i) {
			t.Errorf("Mark(%s) = %#x, %v", name, mark, ok)
		}
	}
	if m.Preferred("backup") != 0 {
		t.Error("Preferred(backup) without a lease should follow the active uplink (0)")
	}
	if m.Preferred("renater") != netmark.Uplink(0) {
		t.Error("Preferred(renater) while it is up should pin to it")
	}
}

func TestInterfaceAppearingGetsItsRoutes(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.carrierChanged("wan0", false, 0) // absent at boot
	fs.take()
	m.carrierChanged("wan0", true, 12) // plugged in
	got := fs.take()
	// The gateway is resolved first (ARP at once), then the routes.
	if len(got) < 2 || got[0] != "resolve wan0 192.0.2.1" || !strings.HasPrefix(got[1], "sync ") {
		t.Fatalf("interface appeared: calls %q; want its gateway resolved and its routes installed", got)
	}
	if st := m.link("renater").tr.state; st != StateOffline {
		t.Errorf("state %s right after appearing; probes must confirm it first", st)
	}
}
