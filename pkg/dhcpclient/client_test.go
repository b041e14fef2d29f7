package dhcpclient

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeServer is an in-memory DHCP server behind a fake transport: it
// offers addr with leases of lease, and records what it received.
type fakeServer struct {
	t     *testing.T
	lease time.Duration

	mu   sync.Mutex
	addr netip.Addr
	got  []*dhcpv4.DHCPv4
	msgs chan Incoming
}

func newFakeServer(t *testing.T, addr netip.Addr, lease time.Duration) *fakeServer {
	return &fakeServer{t: t, addr: addr, lease: lease, msgs: make(chan Incoming, 16)}
}

func (s *fakeServer) Send(msg *dhcpv4.DHCPv4, to, from netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, msg)
	var typ dhcpv4.MessageType
	switch msg.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
		asked := requested(msg)
		if !asked.IsValid() {
			asked, _ = netip.AddrFromSlice(msg.ClientIPAddr.To4())
		}
		if asked != s.addr {
			typ = dhcpv4.MessageTypeNak
		}
	default:
		return nil
	}
	s.msgs <- Incoming{Msg: reply(s.t, msg, typ, s.addr, s.lease), From: testServer}
	return nil
}

func (s *fakeServer) Messages() <-chan Incoming { return s.msgs }
func (s *fakeServer) Close() error              { return nil }

func (s *fakeServer) received() []dhcpv4.MessageType {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dhcpv4.MessageType
	for _, m := range s.got {
		out = append(out, m.MessageType())
	}
	return out
}

type leaseLog struct {
	mu     sync.Mutex
	events []*Lease
	ch     chan *Lease
}

func (l *leaseLog) onLease(_, cur *Lease) {
	l.mu.Lock()
	l.events = append(l.events, cur)
	l.mu.Unlock()
	l.ch <- cur
}

func (l *leaseLog) next(t *testing.T, within time.Duration) *Lease {
	t.Helper()
	select {
	case cur := <-l.ch:
		return cur
	case <-time.After(within):
		t.Fatalf("no lease change within %s", within)
		return nil
	}
}

func runClient(t *testing.T, srv *fakeServer, file string) (*Client, *leaseLog, context.CancelFunc, chan error) {
	t.Helper()
	ll := &leaseLog{ch: make(chan *Lease, 16)}
	c, err := New(Config{
		Interface: "wan1",
		LeaseFile: file,
		OnLease:   ll.onLease,
		Open:      func() (Transport, net.HardwareAddr, error) { return srv, testHW, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() { done <- c.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return c, ll, cancel, done
}

func TestClientRenewsAndReleasesAndRemembers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "uplink", "backup.lease")
	srv := newFakeServer(t, testAddr, 2*time.Second)
	c, ll, cancel, done := runClient(t, srv, file)

	first := ll.next(t, 2*time.Second)
	if first == nil || first.Address.Addr() != testAddr {
		t.Fatalf("first lease %v", first)
	}
	kept, err := loadLease(file)
	if err != nil || kept == nil || kept.Address != first.Address {
		t.Fatalf("lease file after binding: %v, %v", kept, err)
	}
	renewed := ll.next(t, 3*time.Second) // T1 is 1 s
	if renewed == nil || !renewed.SameBinding(first) || !renewed.Acquired.After(first.Acquired) {
		t.Fatalf("renewal: %v after %v", renewed, first)
	}
	if c.State() != StateBound {
		t.Errorf("state after renewal: %s", c.State())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := srv.received(); got[len(got)-1] != dhcpv4.MessageTypeRelease {
		t.Errorf("messages %v: the last one is not a RELEASE", got)
	}
	kept, err = loadLease(file)
	if err != nil || kept == nil || !kept.Released {
		t.Fatalf("lease file after shutdown: %+v, %v; want the released lease kept", kept, err)
	}

	// Next start: the released address is asked for again in the DISCOVER.
	srv2 := newFakeServer(t, testAddr, time.Hour)
	_, ll2, _, _ := runClient(t, srv2, file)
	if l := ll2.next(t, 2*time.Second); l == nil || l.Address.Addr() != testAddr {
		t.Fatalf("lease after restart: %v", l)
	}
	if d := srv2.got[0]; d.MessageType() != dhcpv4.MessageTypeDiscover || requested(d) != testAddr {
		t.Errorf("after a release the first message is %s asking for %v", d.MessageType(), requested(d))
	}
}

func TestClientAfterCrashConfirmsKeptLease(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backup.lease")
	kept := &Lease{Address: netip.MustParsePrefix("100.64.1.10/24"), Gateway: testServer, Server: testServer,
		Acquired: time.Now().Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute}
	if err := saveLease(file, kept); err != nil {
		t.Fatal(err)
	}
	srv := newFakeServer(t, testAddr, time.Hour)
	_, ll, _, _ := runClient(t, srv, file)
	if l := ll.next(t, 2*time.Second); l == nil || l.Address != kept.Address {
		t.Fatalf("lease %v", l)
	}
	if got := srv.received(); len(got) != 1 || got[0] != dhcpv4.MessageTypeRequest {
		t.Errorf("messages %v; want one INIT-REBOOT REQUEST", got)
	}
}

func TestClientServerChangedAddressWhileDown(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backup.lease")
	kept := &Lease{Address: netip.MustParsePrefix("100.64.1.10/24"), Server: testServer,
		Acquired: time.Now().Add(-time.Minute), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute}
	if err := saveLease(file, kept); err != nil {
		t.Fatal(err)
	}
	other := netip.MustParseAddr("100.64.1.99")
	srv := newFakeServer(t, other, time.Hour)
	_, ll, _, _ := runClient(t, srv, file)
	if l := ll.next(t, 2*time.Second); l == nil || l.Address.Addr() != other {
		t.Fatalf("lease %v, want %v after the server refused the kept one", l, other)
	}
	want := []dhcpv4.MessageType{dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest}
	if got := srv.received(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("messages %v, want %v", got, want)
	}
}

func TestLeaseFileDamagedIsIgnored(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backup.lease")
	for name, content := range map[string]string{
		"not json":       "{\"address\": ",
		"bad address":    `{"address":"300.1.1.1/24","server":"100.64.1.1","acquired":"2026-11-28T10:00:00Z","duration":3600000000000,"t1":1,"t2":2}`,
		"inconsistent":   `{"address":"100.64.1.10/24","server":"100.64.1.1","acquired":"2026-11-28T10:00:00Z","duration":10,"t1":20,"t2":5}`,
		"no server":      `{"address":"100.64.1.10/24","acquired":"2026-11-28T10:00:00Z","duration":10,"t1":2,"t2":5}`,
		"no time at all": `{"address":"100.64.1.10/24","server":"100.64.1.1","duration":10,"t1":2,"t2":5}`,
	} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if l, err := loadLease(file); err == nil {
			t.Errorf("%s: loaded %+v without error", name, l)
		}
	}
	if l, err := loadLease(filepath.Join(t.TempDir(), "none.lease")); l != nil || err != nil {
		t.Errorf("missing file: %v, %v; want nothing and no error", l, err)
	}
}

func TestNewRejectsRelativeLeaseFile(t *testing.T) {
	if _, err := New(Config{Interface: "wan1", LeaseFile: "perm/backup.lease"}); err == nil {
		t.Error("relative lease file accepted")
	}
}
