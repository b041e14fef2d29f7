package resolver

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeUpstream is an authoritative server on loopback, UDP and TCP on the
// same port, whose behaviour tests change.
type fakeUpstream struct {
	addr    netip.AddrPort
	queries atomic.Int32
	down    atomic.Bool // drop every query
	handler func(w dns.ResponseWriter, req *dns.Msg)
}

func startUpstream(t *testing.T, h func(w dns.ResponseWriter, req *dns.Msg)) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{handler: h}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	serve := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.queries.Add(1)
		if u.down.Load() {
			return
		}
		u.handler(w, req)
	})
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: serve}, {Listener: ln, Handler: serve}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return u
}

// answerA answers every A query with 192.0.2.1 and the given TTL.
func answerA(ttl uint32) func(w dns.ResponseWriter, req *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if req.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(req.Question[0].Name + " " + itoa(ttl) + " IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	}
}

func itoa(n uint32) string  { return strconv.FormatUint(uint64(n), 10) }
func uitoa(n uint32) string { return itoa(n) }

func newResolver(t *testing.T, clock *fakeClock, cfg Config) *Resolver {
	r := New(nil, nil, clock.Now)
	r.AttemptTimeout = 200 * time.Millisecond
	r.StaleAfter = 300 * time.Millisecond
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 1000
	}
	r.Configure(cfg)
	return r
}

func q(name string, t uint16) dns.Question {
	return dns.Question{Name: dns.Fqdn(name), Qtype: t, Qclass: dns.ClassINET}
}

func resolve(t *testing.T, r *Resolver, name string, qt uint16) Result {
	t.Helper()
	res, err := r.Resolve(context.Background(), q(name, qt), false, false)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return res
}

func TestCacheAnswersAndAgesTTL(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, answerA(300))
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: up.addr}}})
	first := resolve(t, r, "www.example.org", dns.TypeA)
	clock.Advance(100 * time.Second)
	second := resolve(t, r, "WWW.Example.ORG", dns.TypeA)
	if up.queries.Load() != 1 {
		t.Errorf("upstream asked %d times, want 1", up.queries.Load())
	}
	if first.Cached || !second.Cached {
		t.Errorf("cached flags: first %v second %v", first.Cached, second.Cached)
	}
	if ttl := second.Msg.Answer[0].Header().Ttl; ttl != 200 {
		t.Errorf("cached TTL = %d, want 200 (300 - 100 s in cache)", ttl)
	}
	clock.Advance(201 * time.Second)
	if res := resolve(t, r, "www.example.org", dns.TypeA); res.Cached || up.queries.Load() != 2 {
		t.Errorf("expired entry not refreshed: cached %v, %d upstream queries", res.Cached, up.queries.Load())
	}
}

func TestNegativeAnswersCachedForSOAMinimum(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		if req.Question[0].Name == "with-soa.example." {
			soa, _ := dns.NewRR("example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 60")
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: up.addr}}})
	for range 2 {
		if res := resolve(t, r, "with-soa.example", dns.TypeA); res.Msg.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %d", res.Msg.Rcode)
		}
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("NXDOMAIN with SOA: %d upstream queries, want 1 (cached)", n)
	}
	clock.Advance(61 * time.Second) // SOA MINIMUM (60) < SOA TTL (300)
	resolve(t, r, "with-soa.example", dns.TypeA)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("negative entry outlived the SOA minimum: %d upstream queries", n)
	}
	resolve(t, r, "no-soa.example", dns.TypeA)
	resolve(t, r, "no-soa.example", dns.TypeA)
	if n := up.queries.Load(); n != 4 {
		t.Errorf("NXDOMAIN without SOA was cached (%d upstream queries, want 4)", n)
	}
}

func TestTTLBounds(t *testing.T) {
	tests := []struct {
		name     string
		upTTL    uint32
		min, max time.Duration
		want     uint32
	}{
		{"raised to min", 5, 60 * time.Second, time.Hour, 60},
		{"lowered to max", 86400, 0, time.Hour, 3600},
		{"within bounds", 300, 0, time.Hour, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, answerA(tt.upTTL))
			r := newResolver(t, newClock(), Config{Upstreams: []Upstream{{Addr: up.addr}}, MinTTL: tt.min, MaxTTL: tt.max})
			if got := resolve(t, r, "a.example", dns.TypeA).Msg.Answer[0].Header().Ttl; got != tt.want {
				t.Errorf("TTL = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFailoverAndHealthTracking(t *testing.T) {
	clock := newClock()
	bad := startUpstream(t, answerA(60))
	bad.down.Store(true)
	good := startUpstream(t, answerA(60))
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: bad.addr}, {Addr: good.addr}}, CacheSize: -1})
	for i := range 5 {
		resolve(t, r, "n"+uitoa(uint32(i))+".example", dns.TypeA)
	}
	if n := bad.queries.Load(); n != downAfter {
		t.Errorf("failed upstream asked %d times, want %d before it leaves rotation", n, downAfter)
	}
	if r.Healthy()[bad.addr.String()] || !r.Healthy()[good.addr.String()] {
		t.Errorf("health = %v", r.Healthy())
	}
	// After the back-off it is tried again, and back in rotation once it
	// answers.
	bad.down.Store(false)
	clock.Advance(maxBackoff)
	resolve(t, r, "again.example", dns.TypeA)
	if !r.Healthy()[bad.addr.String()] {
		t.Error("recovered upstream not back in rotation")
	}
}

func TestRaceUsesFirstAnswer(t *testing.T) {
	// The slow upstream is listed first and answers a different address, so
	// the answer itself says which upstream won (no timing assertion).
	slow := startUpstream(t, func(w dns.ResponseWriter, req *dns.Msg) {
		time.Sleep(150 * time.Millisecond)
		m := new(dns.Msg)
		m.SetReply(req)
		rr, _ := dns.NewRR(req.Question[0].Name + " 60 IN A 192.0.2.99")
		m.Answer = append(m.Answer, rr)
		w.WriteMsg(m)
	})
	fast := startUpstream(t, answerA(60))
	r := newResolver(t, newClock(), Config{Upstreams: []Upstream{{Addr: slow.addr}, {Addr: fast.addr}}, Race: true})
	ans := resolve(t, r, "race.example", dns.TypeA).Msg.Answer
	if len(ans) != 1 || !strings.Contains(ans[0].String(), "192.0.2.1") {
		t.Errorf("answer %v: want the fast upstream's 192.0.2.1", ans)
	}
	// The slow upstream was asked too; its query may still be in flight.
	deadline := time.Now().Add(2 * time.Second)
	for slow.queries.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if slow.queries.Load() != 1 || fast.queries.Load() != 1 {
		t.Errorf("both upstreams should be asked once: %d, %d", slow.queries.Load(), fast.queries.Load())
	}
}

func TestConditionalForwardLongestDomain(t *testing.T) {
	general := startUpstream(t, answerA(60))
	academy := startUpstream(t, answerA(60))
	dc := startUpstream(t, answerA(60))
	r := newResolver(t, newClock(), Config{
		Upstreams: []Upstream{{Addr: general.addr}},
		Forwards: []Forward{
			{Domain: "ac-lille.fr", Servers: []netip.AddrPort{academy.addr}},
			{Domain: "dc.ac-lille.fr", Servers: []netip.AddrPort{dc.addr}},
		},
	})
	resolve(t, r, "ent.AC-LILLE.fr", dns.TypeA)
	resolve(t, r, "x.dc.ac-lille.fr", dns.TypeA)
	resolve(t, r, "xac-lille.fr", dns.TypeA)
	if general.queries.Load() != 1 || academy.queries.Load() != 1 || dc.queries.Load() != 1 {
		t.Errorf("queries general %d academy %d dc %d, want 1 each", general.queries.Load(), academy.queries.Load(), dc.queries.Load())
	}
}

func TestTruncatedUpstreamAnswerRetriedOverTCP(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for i := range 100 {
			rr, _ := dns.NewRR(req.Question[0].Name + " 60 IN A 198.51.100." + uitoa(uint32(i)))
			m.Answer = append(m.Answer, rr)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncate(512)
		}
		w.WriteMsg(m)
	})
	r := newResolver(t, newClock(), Config{Upstreams: []Upstream{{Addr: up.addr}}})
	if n := len(resolve(t, r, "big.example", dns.TypeA).Msg.Answer); n != 100 {
		t.Errorf("%d records, want the 100 of the TCP answer", n)
	}
}

func TestServeStaleWhenUpstreamsFail(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, answerA(60))
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: up.addr}}, ServeStale: true})
	resolve(t, r, "cached.example", dns.TypeA)
	up.down.Store(true)
	clock.Advance(10 * time.Minute)
	res := resolve(t, r, "cached.example", dns.TypeA)
	if !res.Stale || len(res.Msg.Answer) != 1 || res.Msg.Answer[0].Header().Ttl != staleTTL {
		t.Errorf("stale answer: stale %v, answer %v", res.Stale, res.Msg.Answer)
	}
	if _, err := r.Resolve(context.Background(), q("never-seen.example", dns.TypeA), false, false); err == nil {
		t.Error("uncached name answered with every upstream down")
	}
	r.Configure(Config{Upstreams: []Upstream{{Addr: up.addr}}, MaxTTL: 24 * time.Hour, CacheSize: 1000, ServeStale: false})
	if _, err := r.Resolve(context.Background(), q("cached.example", dns.TypeA), false, false); err == nil {
		t.Error("stale answer served with serve_stale off")
	}
}

func TestPopularNamesPrefetchedBeforeExpiry(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, answerA(100))
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: up.addr}}})
	for range prefetchHits + 1 {
		resolve(t, r, "popular.example", dns.TypeA)
	}
	clock.Advance(95 * time.Second)
	resolve(t, r, "popular.example", dns.TypeA) // a hit that triggers the prefetch
	deadline := time.Now().Add(2 * time.Second)
	for up.queries.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if up.queries.Load() != 2 {
		t.Fatalf("no prefetch: %d upstream queries", up.queries.Load())
	}
	time.Sleep(20 * time.Millisecond)
	clock.Advance(10 * time.Second) // past the original expiry
	if res := resolve(t, r, "popular.example", dns.TypeA); !res.Cached {
		t.Error("prefetched entry not used after the old one expired")
	}
}
