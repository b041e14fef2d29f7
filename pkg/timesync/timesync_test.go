package timesync

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestTimestampRoundTripsAcrossTheEraWrap(t *testing.T) {
	for _, s := range []string{"1999-12-31T23:59:59.5Z", "2026-11-28T10:00:00.123456Z", "2036-02-07T06:28:15Z", "2036-02-07T06:28:17.25Z", "2050-01-01T00:00:00Z"} {
		want, _ := time.Parse(time.RFC3339Nano, s)
		got := NewTimestamp(want).Time(want.Add(-time.Hour))
		if d := got.Sub(want).Abs(); d > time.Microsecond {
			t.Errorf("%s came back as %s", want, got)
		}
	}
}

func TestPacketEncodesAndDecodes(t *testing.T) {
	p := Packet{Leap: 1, Version: 4, Mode: ModeServer, Stratum: 2, Poll: 6, Precision: -20, RootDelay: 0x1234, RootDisp: 0x5678,
		RefID: [4]byte{203, 0, 113, 10}, RefTime: 1, Origin: 2, Receive: 3, Transmit: 4}
	b := p.Append(nil)
	if len(b) != PacketLen {
		t.Fatalf("encoded %d bytes", len(b))
	}
	q, err := ParsePacket(b)
	if err != nil || q != p {
		t.Fatalf("decoded %+v, %v; want %+v", q, err, p)
	}
	if _, err := ParsePacket(b[:47]); err == nil {
		t.Error("a 47-byte packet parsed")
	}
}

func TestMeasureRejectsAnswersThatAreNoTime(t *testing.T) {
	t1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	t4 := t1.Add(20 * time.Millisecond)
	good := Packet{Version: 4, Mode: ModeServer, Stratum: 1, RefTime: NewTimestamp(t1), Receive: NewTimestamp(t1.Add(15 * time.Millisecond)), Transmit: NewTimestamp(t1.Add(16 * time.Millisecond))}
	s, err := measure(good, t1, t4)
	if err != nil {
		t.Fatal(err)
	}
	if d := (s.offset - 5500*time.Microsecond).Abs(); d > time.Microsecond {
		t.Errorf("offset %s, want 5.5ms", s.offset)
	}
	if d := (s.delay - 19*time.Millisecond).Abs(); d > time.Microsecond {
		t.Errorf("delay %s, want 19ms", s.delay)
	}
	for name, mod := range map[string]func(*Packet){
		"client mode":       func(p *Packet) { p.Mode = ModeClient },
		"version 0":         func(p *Packet) { p.Version = 0 },
		"kiss of death":     func(p *Packet) { p.Stratum = 0; p.RefID = [4]byte{'R', 'A', 'T', 'E'} },
		"unsynchronised":    func(p *Packet) { p.Leap = LeapUnsynchronized },
		"stratum 16":        func(p *Packet) { p.Stratum = 16 },
		"no transmit time":  func(p *Packet) { p.Transmit = 0 },
		"no reference time": func(p *Packet) { p.RefTime = 0 },
		"sent before received": func(p *Packet) {
			p.Transmit = NewTimestamp(t1.Add(10 * time.Millisecond))
		},
		"huge root distance": func(p *Packet) { p.RootDisp = toShort(2 * time.Second) },
	} {
		p := good
		mod(&p)
		if _, err := measure(p, t1, t4); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// refServer is an NTP server on loopback whose clock is off by offset.
type refServer struct {
	conn   net.PacketConn
	mu     sync.Mutex
	offset time.Duration
	mute   bool
}

func startRef(t *testing.T, offset time.Duration) *refServer {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &refServer{conn: c, offset: offset}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			q, err := ParsePacket(buf[:n])
			r.mu.Lock()
			off, mute := r.offset, r.mute
			r.mu.Unlock()
			if err != nil || mute {
				continue
			}
			now := time.Now().Add(off)
			resp := Packet{Version: 4, Mode: ModeServer, Stratum: 1, RefID: [4]byte{'G', 'P', 'S', 0}, RefTime: NewTimestamp(now.Add(-time.Second)),
				Origin: q.Transmit, Receive: NewTimestamp(now), Transmit: NewTimestamp(now)}
			c.WriteTo(resp.Append(nil), from)
		}
	}()
	return r
}

// dialTo sends every query to the reference server, whatever the
// configured address.
func (r *refServer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, r.conn.LocalAddr().String())
}

type fakeClock struct {
	mu           sync.Mutex
	steps, slews []time.Duration
	fail         error
}

func (c *fakeClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, d)
	return c.fail
}

func (c *fakeClock) Slew(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slews = append(c.slews, d)
	return c.fail
}

func newService(t *testing.T, ref *refServer, clock Clock, warn *health.Registry) (*Service, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := Options{Dial: ref.dial, QueryTimeout: 500 * time.Millisecond,
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("192.0.2.123")}, nil
		}}
	if clock != nil {
		opts.Clock = clock
	}
	s := New(box.Deps{Log: discardLog(), Metrics: reg, Health: warn}, opts)
	s.plan = &Plan{Servers: []string{"ntp.renater.fr"}}
	return s, reg
}

func TestSyncMeasuresWithoutTouchingTheClock(t *testing.T) {
	ref := startRef(t, 0)
	warn := health.New(nil)
	s, reg := newService(t, ref, nil, warn)
	if !s.round(context.Background()) {
		t.Fatalf("round failed: %s", s.Status().Err)
	}
	st := s.Status()
	if !st.Synced || st.Steered || st.Stratum != 1 || st.Offset.Abs() > 50*time.Millisecond {
		t.Errorf("status %+v, want synced to a stratum 1 with a small offset, not steered", st)
	}
	if err := testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP passerelle_time_synchronized 1 when the box's clock is within 128 ms of a good NTP server, measured recently.
# TYPE passerelle_time_synchronized gauge
passerelle_time_synchronized 1
# HELP passerelle_time_clock_steered 1 when the firmware sets the system clock; 0 when it only measures it.
# TYPE passerelle_time_clock_steered gauge
passerelle_time_clock_steered 0
`), "passerelle_time_synchronized", "passerelle_time_clock_steered"); err != nil {
		t.Error(err)
	}
	if len(warn.List()) != 0 {
		t.Errorf("warnings: %v", warn.List())
	}

	// The server says the box is 5 s late: without the right to set the
	// clock, the box reports it and is not synchronised.
	ref.mu.Lock()
	ref.offset = 5 * time.Second
	ref.mu.Unlock()
	s.round(context.Background())
	st = s.Status()
	if st.Synced || (st.Offset-5*time.Second).Abs() > 50*time.Millisecond {
		t.Errorf("status %+v, want unsynchronised 5 s behind", st)
	}
	if got := testutil.ToFloat64(s.m.offset); got < 4.9 || got > 5.1 {
		t.Errorf("offset metric %v, want 5", got)
	}
	if _, ok := warn.Get(warnCode); !ok {
		t.Error("no warning for a clock that is off and not steered")
	}
}

func TestSyncStepsOrSlewsAnOwnedClock(t *testing.T) {
	ref := startRef(t, -3*time.Second)
	clock := &fakeClock{}
	s, _ := newService(t, ref, clock, health.New(nil))
	s.round(context.Background())
	ref.mu.Lock()
	ref.offset = 20 * time.Millisecond
	ref.mu.Unlock()
	s.round(context.Background())
	if len(clock.steps) != 1 || (clock.steps[0]+3*time.Second).Abs() > 50*time.Millisecond {
		t.Errorf("steps %v, want one of -3s", clock.steps)
	}
	if len(clock.slews) != 1 || (clock.slews[0]-20*time.Millisecond).Abs() > 20*time.Millisecond {
		t.Errorf("slews %v, want one of 20ms", clock.slews)
	}
	if st := s.Status(); !st.Synced || !st.Steered {
		t.Errorf("status %+v", st)
	}
	clock.fail = errors.New("EPERM")
	ref.mu.Lock()
	ref.offset = time.Minute
	ref.mu.Unlock()
	s.round(context.Background())
	if s.Status().Synced {
		t.Error("synchronised although setting the clock failed")
	}
}

func TestUnreachableServersRaiseAWarningAfterSomeRounds(t *testing.T) {
	ref := startRef(t, 0)
	ref.mu.Lock()
	ref.mute = true
	ref.mu.Unlock()
	warn := health.New(nil)
	s, _ := newService(t, ref, nil, warn)
	s.opts.QueryTimeout = 50 * time.Millisecond
	for i := 1; i <= failedRoundsWarn; i++ {
		if s.round(context.Background()) {
			t.Fatal("a mute server gave a sample")
		}
		if _, ok := warn.Get(warnCode); ok != (i >= failedRoundsWarn) {
			t.Errorf("after %d failed rounds warning raised = %v", i, ok)
		}
	}
	if st := s.Status(); st.Synced || !strings.Contains(st.Err, "no answer") {
		t.Errorf("status %+v", st)
	}
	ref.mu.Lock()
	ref.mute = false
	ref.mu.Unlock()
	s.round(context.Background())
	if _, ok := warn.Get(warnCode); ok {
		t.Error("warning not cleared once the server answers")
	}
}

func TestRespondAnswersClientQueriesOnly(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now.Add(time.Millisecond) }
	q := Packet{Version: 4, Mode: ModeClient, Poll: 6, Transmit: 0xdeadbeef}
	synced := Status{Synced: true, Stratum: 1, Server: netip.MustParseAddr("203.0.113.10"), LastSync: now.Add(-time.Minute), Delay: 2 * time.Millisecond}

	b, ok := respond(q.Append(nil), now, synced, clock)
	if !ok {
		t.Fatal("query not answered")
	}
	r, _ := ParsePacket(b)
	if r.Mode != ModeServer || r.Leap != 0 || r.Stratum != 2 || r.Origin != q.Transmit || r.RefID != [4]byte{203, 0, 113, 10} {
		t.Errorf("answer %+v", r)
	}
	if got := r.Transmit.Time(now); got.Sub(now) != time.Millisecond {
		t.Errorf("transmit time %s", got)
	}
	b, _ = respond(q.Append(nil), now, Status{}, clock)
	if r, _ := ParsePacket(b); r.Leap != LeapUnsynchronized || r.Stratum != StratumUnsynchronized {
		t.Errorf("unsynchronised box answered %+v", r)
	}
	for name, p := range map[string][]byte{
		"short":       q.Append(nil)[:40],
		"server mode": Packet{Version: 4, Mode: ModeServer, Transmit: 1}.Append(nil),
		"version 7":   Packet{Version: 7, Mode: ModeClient, Transmit: 1}.Append(nil),
		"no transmit": Packet{Version: 4, Mode: ModeClient}.Append(nil),
	} {
		if _, ok := respond(p, now, synced, clock); ok {
			t.Errorf("%s: answered", name)
		}
	}
}

// TestServiceAnswersOnTheZoneAddress runs the listener on loopback.
func TestServiceAnswersOnTheZoneAddress(t *testing.T) {
	ref := startRef(t, 0)
	s, _ := newService(t, ref, nil, health.New(nil))
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	conn, err := listen(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	go s.readLoop(conn, "test")
	defer conn.Close()
	s.round(context.Background())

	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	smp, err := query(context.Background(), func(ctx context.Context, _, _ string) (net.Conn, error) { return c, nil },
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), time.Now, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if smp.stratum != 2 || smp.offset.Abs() > 50*time.Millisecond {
		t.Errorf("box answered stratum %d offset %s", smp.stratum, smp.offset)
	}
	if got := testutil.ToFloat64(s.m.served.WithLabelValues("test", "answered")); got != 1 {
		t.Errorf("answered = %v", got)
	}
}

// BenchmarkRespond is the cost of answering one client query.
func BenchmarkRespond(b *testing.B) {
	q := Packet{Version: 4, Mode: ModeClient, Transmit: 1}.Append(nil)
	st := Status{Synced: true, Stratum: 1, LastSync: time.Now()}
	b.ReportAllocs()
	for range b.N {
		if _, ok := respond(q, time.Now(), st, time.Now); !ok {
			b.Fatal("not answered")
		}
	}
}
