package dhcpclient

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	testHW     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	testServer = netip.MustParseAddr("100.64.1.1")
	testAddr   = netip.MustParseAddr("100.64.1.10")
	t0         = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
)

func newTestMachine() *machine {
	var n byte
	return newMachine(testHW, func() dhcpv4.TransactionID {
		n++
		return dhcpv4.TransactionID{0, 0, 0, n}
	}, func() time.Duration { return 0 })
}

// reply builds a server's answer to req.
func reply(t *testing.T, req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr netip.Addr, lease time.Duration, extra ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServer.AsSlice())),
	}
	if typ != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(yiaddr.AsSlice()),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(testServer.AsSlice()),
			dhcpv4.WithLeaseTime(uint32(lease/time.Second)),
		)
	}
	m, err := dhcpv4.NewReplyFromRequest(req, append(mods, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func only(t *testing.T, s step) outgoing {
	t.Helper()
	if len(s.send) != 1 {
		t.Fatalf("sent %d messages, want 1", len(s.send))
	}
	return s.send[0]
}

func requested(m *dhcpv4.DHCPv4) netip.Addr {
	a, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
	return a
}

// bindFresh takes a new machine from start to BOUND with a lease of d.
func bindFresh(t *testing.T, m *machine, d time.Duration) *Lease {
	t.Helper()
	disc := only(t, m.start(t0, nil))
	offer := reply(t, disc.msg, dhcpv4.MessageTypeOffer, testAddr, d)
	req := only(t, m.receive(t0.Add(10*time.Millisecond), offer, testServer))
	s := m.receive(t0.Add(20*time.Millisecond), reply(t, req.msg, dhcpv4.MessageTypeAck, testAddr, d), testServer)
	if s.bound == nil {
		t.Fatalf("no lease after ACK (state %s)", m.state)
	}
	return s.bound
}

func TestFirstStartDiscoversRequestsAndBinds(t *testing.T) {
	m := newTestMachine()
	disc := only(t, m.start(t0, nil))
	if disc.msg.MessageType() != dhcpv4.MessageTypeDiscover || disc.to.IsValid() {
		t.Fatalf("first message: %s to %v, want a broadcast DISCOVER", disc.msg.MessageType(), disc.to)
	}
	if requested(disc.msg).IsValid() {
		t.Errorf("first DISCOVER asks for %v; with no kept lease it asks for nothing", requested(disc.msg))
	}
	offer := reply(t, disc.msg, dhcpv4.MessageTypeOffer, testAddr, time.Hour)
	req := only(t, m.receive(t0.Add(time.Millisecond), offer, testServer))
	if req.msg.MessageType() != dhcpv4.MessageTypeRequest || req.to.IsValid() {
		t.Fatalf("after the offer: %s to %v, want a broadcast REQUEST", req.msg.MessageType(), req.to)
	}
	if requested(req.msg) != testAddr || !req.msg.ServerIdentifier().Equal(testServer.AsSlice()) {
		t.Errorf("REQUEST asks for %v from %v, want %v from %v", requested(req.msg), req.msg.ServerIdentifier(), testAddr, testServer)
	}
	sentAt := t0.Add(time.Millisecond)
	s := m.receive(t0.Add(5*time.Millisecond), reply(t, req.msg, dhcpv4.MessageTypeAck, testAddr, time.Hour), testServer)
	want := Lease{
		Address: netip.MustParsePrefix("100.64.1.10/24"), Gateway: testServer, Server: testServer,
		Acquired: sentAt, Duration: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
	}
	if s.bound == nil || s.bound.String() != want.String() || s.bound.Acquired != want.Acquired || s.bound.T1 != want.T1 || s.bound.T2 != want.T2 {
		t.Fatalf("lease = %+v\nwant    %+v", s.bound, want)
	}
	if m.state != StateBound || m.wake != sentAt.Add(30*time.Minute) {
		t.Errorf("state %s, wake %v; want bound until T1 %v", m.state, m.wake, sentAt.Add(30*time.Minute))
	}
}

func TestRenewsByUnicastAtT1(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	if s := m.timer(l.RenewAt().Add(-time.Millisecond)); len(s.send) != 0 {
		t.Fatalf("sent %d messages before T1", len(s.send))
	}
	ren := only(t, m.timer(l.RenewAt()))
	if m.state != StateRenewing || ren.to != testServer || ren.from != testAddr {
		t.Fatalf("at T1: state %s, REQUEST to %v from %v; want renewing, unicast to %v from %v", m.state, ren.to, ren.from, testServer, testAddr)
	}
	if !ren.msg.ClientIPAddr.Equal(testAddr.AsSlice()) || requested(ren.msg).IsValid() || ren.msg.ServerIdentifier() != nil {
		t.Errorf("renewal must carry ciaddr and neither requested address nor server id (RFC 2131 4.3.2): %s", ren.msg.Summary())
	}
	at := l.RenewAt().Add(3 * time.Millisecond)
	s := m.receive(at, reply(t, ren.msg, dhcpv4.MessageTypeAck, testAddr, 8*time.Second), testServer)
	if s.bound == nil || s.bound.Acquired != l.RenewAt() || s.lost != "" {
		t.Fatalf("renewal ACK: bound %+v lost %q; want the lease renewed from T1", s.bound, s.lost)
	}
	if m.state != StateBound || m.wake != l.RenewAt().Add(4*time.Second) {
		t.Errorf("after renewal: state %s wake %v", m.state, m.wake)
	}
}

func TestRebindsAtT2ThenExpires(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	only(t, m.timer(l.RenewAt()))
	if m.wake != l.RebindAt() {
		t.Fatalf("renewing retransmits at %v; with less than a minute to T2 it waits for T2 %v", m.wake, l.RebindAt())
	}
	reb := only(t, m.timer(l.RebindAt()))
	if m.state != StateRebinding || reb.to.IsValid() || reb.from != testAddr {
		t.Fatalf("at T2: state %s, to %v from %v; want a broadcast from our address", m.state, reb.to, reb.from)
	}
	s := m.timer(l.Expiry())
	if s.lost != "lease expired" || m.lease != nil || m.state != StateSelecting {
		t.Fatalf("at expiry: lost %q, state %s", s.lost, m.state)
	}
	if d := only(t, s); d.msg.MessageType() != dhcpv4.MessageTypeDiscover || requested(d.msg) != testAddr {
		t.Errorf("after expiry: %s asking for %v; want DISCOVER asking for the old address", d.msg.MessageType(), requested(d.msg))
	}
}

func TestRebindingAnsweredByAnotherServer(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	m.timer(l.RenewAt())
	reb := only(t, m.timer(l.RebindAt()))
	other := netip.MustParseAddr("100.64.1.2")
	ack := reply(t, reb.msg, dhcpv4.MessageTypeAck, testAddr, 8*time.Second,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(other.AsSlice())))
	s := m.receive(l.RebindAt().Add(time.Millisecond), ack, other)
	if s.bound == nil || s.bound.Server != other {
		t.Fatalf("rebinding ACK from %v: bound %+v", other, s.bound)
	}
}

func TestNAKOnRenewalDropsLeaseAndRediscovers(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	ren := only(t, m.timer(l.RenewAt()))
	s := m.receive(l.RenewAt().Add(time.Millisecond), reply(t, ren.msg, dhcpv4.MessageTypeNak, netip.Addr{}, 0), testServer)
	if s.lost == "" || !s.refused || m.lease != nil {
		t.Fatalf("NAK: lost %q refused %v lease %v; want the lease dropped and forgotten", s.lost, s.refused, m.lease)
	}
	d := only(t, s)
	if d.msg.MessageType() != dhcpv4.MessageTypeDiscover || requested(d.msg).IsValid() {
		t.Errorf("after NAK: %s asking for %v; want DISCOVER asking for nothing", d.msg.MessageType(), requested(d.msg))
	}
}

func TestAddressChangeOnRenewalThroughNAK(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	ren := only(t, m.timer(l.RenewAt()))
	now := l.RenewAt().Add(time.Millisecond)
	disc := only(t, m.receive(now, reply(t, ren.msg, dhcpv4.MessageTypeNak, netip.Addr{}, 0), testServer))
	newAddr := netip.MustParseAddr("100.64.1.20")
	req := only(t, m.receive(now, reply(t, disc.msg, dhcpv4.MessageTypeOffer, newAddr, 8*time.Second), testServer))
	s := m.receive(now, reply(t, req.msg, dhcpv4.MessageTypeAck, newAddr, 8*time.Second), testServer)
	if s.bound == nil || s.bound.Address.Addr() != newAddr {
		t.Fatalf("after NAK and new offer: bound %+v, want %v", s.bound, newAddr)
	}
}

func TestAddressChangeInRenewalACK(t *testing.T) {
	m := newTestMachine()
	l := bindFresh(t, m, 8*time.Second)
	ren := only(t, m.timer(l.RenewAt()))
	newAddr := netip.MustParseAddr("100.64.1.30")
	s := m.receive(l.RenewAt(), reply(t, ren.msg, dhcpv4.MessageTypeAck, newAddr, 8*time.Second), testServer)
	if s.bound == nil || s.bound.Address.Addr() != newAddr || m.lease.Address.Addr() != newAddr {
		t.Fatalf("renewal ACK with a new address: bound %+v", s.bound)
	}
}

func TestRestartWithKeptLeaseUsesInitReboot(t *testing.T) {
	kept := &Lease{Address: netip.MustParsePrefix("100.64.1.10/24"), Gateway: testServer, Server: testServer,
		Acquired: t0.Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 52 * time.Minute}
	m := newTestMachine()
	r := only(t, m.start(t0, kept))
	if m.state != StateRebooting || r.msg.MessageType() != dhcpv4.MessageTypeRequest || r.to.IsValid() {
		t.Fatalf("restart: state %s, %s to %v; want a broadcast INIT-REBOOT REQUEST", m.state, r.msg.MessageType(), r.to)
	}
	if requested(r.msg) != testAddr || r.msg.ServerIdentifier() != nil || !r.msg.ClientIPAddr.IsUnspecified() {
		t.Errorf("INIT-REBOOT REQUEST must ask for the kept address with no server id and no ciaddr: %s", r.msg.Summary())
	}
	s := m.receive(t0.Add(time.Millisecond), reply(t, r.msg, dhcpv4.MessageTypeAck, testAddr, time.Hour), testServer)
	if s.bound == nil || s.bound.Address.Addr() != testAddr {
		t.Fatalf("INIT-REBOOT ACK: bound %+v", s.bound)
	}
}

func TestRestartWithoutAnswerFallsBackToDiscover(t *testing.T) {
	kept := &Lease{Address: netip.MustParsePrefix("100.64.1.10/24"), Server: testServer,
		Acquired: t0.Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 52 * time.Minute}
	m := newTestMachine()
	m.start(t0, kept)
	var now time.Time
	for i := 1; i < maxRebootTries; i++ {
		now = m.wake
		only(t, m.timer(now))
	}
	d := only(t, m.timer(m.wake))
	if d.msg.MessageType() != dhcpv4.MessageTypeDiscover || requested(d.msg) != testAddr {
		t.Fatalf("unanswered INIT-REBOOT: %s asking for %v; want DISCOVER asking for the kept address", d.msg.MessageType(), requested(d.msg))
	}
}

func TestRestartWithExpiredOrReleasedLeaseAsksForSameAddress(t *testing.T) {
	base := Lease{Address: netip.MustParsePrefix("100.64.1.10/24"), Server: testServer,
		Acquired: t0.Add(-2 * time.Hour), Duration: time.Hour, T1: 30 * time.Minute, T2: 52 * time.Minute}
	released := base
	released.Acquired, released.Released = t0.Add(-time.Minute), true
	for name, kept := range map[string]*Lease{"expired": &base, "released": &released} {
		t.Run(name, func(t *testing.T) {
			m := newTestMachine()
			d := only(t, m.start(t0, kept))
			if d.msg.MessageType() != dhcpv4.MessageTypeDiscover || requested(d.msg) != testAddr {
				t.Errorf("start: %s asking for %v; want DISCOVER asking for %v", d.msg.MessageType(), requested(d.msg), testAddr)
			}
		})
	}
}

func TestStopReleasesLease(t *testing.T) {
	m := newTestMachine()
	bindFresh(t, m, time.Hour)
	s := m.stop()
	rel := only(t, s)
	if rel.msg.MessageType() != dhcpv4.MessageTypeRelease || rel.to != testServer || rel.from != testAddr {
		t.Fatalf("stop: %s to %v from %v; want RELEASE unicast to the server", rel.msg.MessageType(), rel.to, rel.from)
	}
	if s.release == nil || !s.release.Released || s.lost == "" {
		t.Errorf("stop: release %+v lost %q", s.release, s.lost)
	}
	if s := newTestMachine().stop(); len(s.send) != 0 {
		t.Errorf("stop without a lease sent %d messages", len(s.send))
	}
}

func TestRetransmissionBackoff(t *testing.T) {
	m := newTestMachine()
	m.start(t0, nil)
	var got []time.Duration
	for range 7 {
		got = append(got, m.wake.Sub(t0))
		only(t, m.timer(m.wake))
	}
	want := []time.Duration{4, 12, 28, 60, 124, 188, 252}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("DISCOVER retransmissions at %v, want %v seconds (4, 8, 16, 32, 64, 64...)", got, want)
		}
	}
}

func TestUnansweredRequestGoesBackToDiscover(t *testing.T) {
	m := newTestMachine()
	disc := only(t, m.start(t0, nil))
	m.receive(t0, reply(t, disc.msg, dhcpv4.MessageTypeOffer, testAddr, time.Hour), testServer)
	for range maxRequestTries - 1 {
		if r := only(t, m.timer(m.wake)); r.msg.MessageType() != dhcpv4.MessageTypeRequest {
			t.Fatalf("retransmission is a %s", r.msg.MessageType())
		}
	}
	if d := only(t, m.timer(m.wake)); d.msg.MessageType() != dhcpv4.MessageTypeDiscover || m.state != StateSelecting {
		t.Fatalf("after %d unanswered REQUESTs: %s in state %s", maxRequestTries, d.msg.MessageType(), m.state)
	}
}

func TestIgnoresForeignAndStaleReplies(t *testing.T) {
	m := newTestMachine()
	disc := only(t, m.start(t0, nil))
	wrongXID := reply(t, disc.msg, dhcpv4.MessageTypeOffer, testAddr, time.Hour)
	wrongXID.TransactionID[0] ^= 0xff
	otherClient := reply(t, disc.msg, dhcpv4.MessageTypeOffer, testAddr, time.Hour)
	otherClient.ClientHWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ack := reply(t, disc.msg, dhcpv4.MessageTypeAck, testAddr, time.Hour)
	for name, msg := range map[string]*dhcpv4.DHCPv4{"wrong xid": wrongXID, "other client": otherClient, "ACK while selecting": ack} {
		if s := m.receive(t0, msg, testServer); len(s.send) != 0 || s.bound != nil || m.state != StateSelecting {
			t.Errorf("%s: acted on it (state %s)", name, m.state)
		}
	}
}

func TestLeaseFromACK(t *testing.T) {
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(testHW), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	ack := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		base := []dhcpv4.Modifier{
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.WithYourIP(testAddr.AsSlice()),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(testServer.AsSlice()),
			dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServer.AsSlice())),
		}
		m, _ := dhcpv4.NewReplyFromRequest(req, append(base, mods...)...)
		return m
	}
	tests := []struct {
		name    string
		ack     *dhcpv4.DHCPv4
		wantErr bool
		check   func(*Lease) bool
	}{
		{"complete", ack(), false, func(l *Lease) bool { return l.T1 == 30*time.Minute && l.Gateway == testServer }},
		{"no lease time", ack(dhcpv4.WithoutOption(dhcpv4.OptionIPAddressLeaseTime)), true, nil},
		{"no address", ack(dhcpv4.WithYourIP(net.IPv4zero)), true, nil},
		{"broadcast address", ack(dhcpv4.WithYourIP(net.IPv4bcast)), true, nil},
		{"bad mask", ack(dhcpv4.WithNetmask(net.IPMask{255, 0, 255, 0})), true, nil},
		{"router outside subnet ignored", ack(dhcpv4.WithRouter(net.IPv4(192, 0, 2, 1))), false, func(l *Lease) bool { return !l.Gateway.IsValid() }},
		{"server id missing uses sender", ack(dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier)), false, func(l *Lease) bool { return l.Server == testServer }},
		{"T1 after T2 reset", ack(dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(3000*time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(2000*time.Second))), false,
			func(l *Lease) bool { return l.T1 == 1800*time.Second && l.T2 == 2000*time.Second }},
		{"tiny lease stretched", ack(dhcpv4.WithLeaseTime(0), dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(500*time.Millisecond))), true, nil},
		{"one-second lease stretched", ack(dhcpv4.WithLeaseTime(1)), false, func(l *Lease) bool { return l.Duration == minLease && l.T1 < l.T2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := leaseFromACK(tt.ack, t0, testServer)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if err := l.check(); err != nil {
				t.Errorf("lease fails its own check: %v", err)
			}
			if tt.check != nil && !tt.check(l) {
				t.Errorf("lease %+v", l)
			}
		})
	}
}
