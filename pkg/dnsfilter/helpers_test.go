package dnsfilter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// fakeClock is a settable clock shared by the filter and the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// upstreamRecords are what the fake upstream knows, besides answering
// every other A query with 192.0.2.1.
var upstreamRecords = map[string][]string{
	"forcesafesearch.google.com.":    {"A 216.239.38.120"},
	"restrict.youtube.com.":          {"A 216.239.38.120"},
	"restrictmoderate.youtube.com.":  {"A 216.239.38.119"},
	"strict.bing.com.":               {"A 204.79.197.220"},
	"safe.duckduckgo.com.":           {"A 52.142.124.215"},
	"safeapi.qwant.com.":             {"A 194.187.168.114"},
	"strict-safe-search.ecosia.org.": {"A 192.0.2.77"},
	"cloak.example.":                 {"CNAME tracker.example.com."},
	"tracker.example.com.":           {"A 192.0.2.66"},
}

// fakeUpstream is the authoritative server the filter forwards to, on
// loopback, UDP and TCP on one port.
type fakeUpstream struct {
	addr    netip.AddrPort
	down    atomic.Bool
	queries atomic.Int64

	mu   sync.Mutex
	seen []string // every question received, "name TYPE", lower case
}

// received returns the questions that reached the upstream so far.
func (u *fakeUpstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	pc, ln := listenPair(t, "127.0.0.1")
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.queries.Add(1)
		if len(req.Question) > 0 {
			u.mu.Lock()
			u.seen = append(u.seen, strings.ToLower(req.Question[0].Name)+" "+dns.TypeToString[req.Question[0].Qtype])
			u.mu.Unlock()
		}
		if u.down.Load() {
			return
		}
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case name == "big.example.":
			for i := range 100 {
				m.Answer = append(m.Answer, mustRR(q.Name+fmt.Sprintf(" 300 IN A 198.51.100.%d", i)))
			}
		case name == "nx.example.":
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, mustRR("example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 60"))
		case upstreamRecords[name] != nil:
			target := q.Name
			for _, rec := range upstreamRecords[name] {
				rr := mustRR(target + " 300 IN " + rec)
				if c, ok := rr.(*dns.CNAME); ok {
					m.Answer = append(m.Answer, rr)
					target = c.Target
					for _, r2 := range upstreamRecords[strings.ToLower(target)] {
						m.Answer = append(m.Answer, mustRR(target+" 300 IN "+r2))
					}
					continue
				}
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		case q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, mustRR(q.Name+" 300 IN A 192.0.2.1"))
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	serveDNS(t, pc, ln, h)
	return u
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// listenPair opens UDP and TCP sockets on the same free port of host.
func listenPair(t testing.TB, host string) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("no free port")
	return nil, nil
}

func serveDNS(t testing.TB, pc net.PacketConn, ln net.Listener, h dns.Handler) {
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
}

// freePort returns a port free for UDP and TCP on every address given.
func freePort(t testing.TB, hosts ...string) int {
	t.Helper()
	for range 50 {
		pc, ln := listenPair(t, hosts[0])
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ok := true
		var extra []interface{ Close() error }
		for _, h := range hosts[1:] {
			p2, err := net.ListenPacket("udp", net.JoinHostPort(h, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			extra = append(extra, p2)
			l2, err := net.Listen("tcp", net.JoinHostPort(h, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			extra = append(extra, l2)
		}
		pc.Close()
		ln.Close()
		for _, c := range extra {
			c.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// testLists writes a small UT1 tree.
func testLists(t testing.TB, dir string, extra map[string]string) string {
	t.Helper()
	cats := map[string]string{
		"adult/domains":    "example.com\nbad.example.org\nexample.net\nboth.example\n",
		"adult/usage":      "black\n",
		"adult/urls":       "example.info/adult-page\n",
		"gambling/domains": "casino.example\n",
		"gambling/usage":   "black\n",
		"liste_bu/domains": "lib.example.net\nboth.example\n",
		"liste_bu/usage":   "white\n",
		"doh/domains":      "doh.example\n192.0.2.53\n",
		"doh/usage":        "black\n",
		"vpn/domains":      "vpn.example\n",
		"vpn/usage":        "black\n",
	}
	for k, v := range extra {
		cats[k] = v
	}
	for name, body := range cats {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const testConfig = `version: 1
identity: {uai: 0599999Y, name: Test, academy: lille}
uplinks:
  - {name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}
zones:
  - {name: peda, kind: pedagogical, interfaces: [lan0], subnet: 10.10.0.0/24, address: 10.10.0.1, dns_profile: eleves}
  - {name: admin, kind: administrative, interfaces: [lan1], subnet: 10.20.0.0/24, address: 10.20.0.1, dns_profile: personnels}
  - {name: guest, kind: guest, interfaces: [lan2], subnet: 10.30.0.0/24, address: 10.30.0.1, dns_profile: invites}
dns:
  upstreams: [{address: "UPSTREAM"}]
  rate_limit: 100000
  lists: {directory: LISTS}
  profiles:
    - name: eleves
      categories: [adult, gambling, liste_bu]
      allow: [fine.school-deny.example, kids.example.com]
      deny: [school-deny.example]
    - name: personnels
      categories: [gambling]
      safe_search: moderate
      minors: false
      fail_closed: false
    - name: invites
      categories: [adult]
      block_response: blockpage
`

// testServer is a filter serving the three zones of testConfig on
// loopback addresses.
type testServer struct {
	f      *Filter
	up     *fakeUpstream
	clock  *fakeClock
	health *health.Registry
	addrs  map[string]string // zone -> host:port
	cfg    *config.Config
	plan   *Plan
	stop   func()
}

var zoneLoopback = map[string]string{"peda": "127.0.10.1", "admin": "127.0.20.1", "guest": "127.0.30.1"}

var loopbackAddrPort = regexp.MustCompile(`"127\.0\.0\.1:[0-9]+"`)

func startServer(t testing.TB, listsDir string, edit func(string) string) *testServer {
	t.Helper()
	return startServerOpts(t, listsDir, edit, nil)
}

func startServerOpts(t testing.TB, listsDir string, edit func(string) string, opts func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{up: startUpstream(t), clock: newClock(), addrs: map[string]string{}}
	y := strings.ReplaceAll(testConfig, "UPSTREAM", ts.up.addr.String())
	y = strings.ReplaceAll(y, "LISTS", listsDir)
	if edit != nil {
		y = edit(y)
	}
	// A config may not name loopback resolvers (the box itself): the
	// fake servers' addresses become placeholders, put back in the plan.
	fakes := map[netip.AddrPort]netip.AddrPort{}
	y = loopbackAddrPort.ReplaceAllStringFunc(y, func(s string) string {
		placeholder := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + len(fakes))}), 53)
		fakes[placeholder] = netip.MustParseAddrPort(strings.Trim(s, `"`))
		return `"` + placeholder.String() + `"`
	})
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	ts.cfg = cfg
	plan, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plan.Listeners {
		plan.Listeners[i].Addr = netip.MustParseAddr(zoneLoopback[plan.Listeners[i].Zone])
	}
	for i, u := range plan.Resolver.Upstreams {
		if a, ok := fakes[u.Addr]; ok {
			plan.Resolver.Upstreams[i].Addr = a
		}
	}
	for _, fw := range plan.Resolver.Forwards {
		for i, s := range fw.Servers {
			if a, ok := fakes[s]; ok {
				fw.Servers[i] = a
			}
		}
	}
	ts.plan = plan
	port := freePort(t, "127.0.10.1", "127.0.20.1", "127.0.30.1")
	for z, a := range zoneLoopback {
		ts.addrs[z] = net.JoinHostPort(a, fmt.Sprint(port))
	}
	o := Options{Port: port, UDPSockets: 2}
	if opts != nil {
		opts(&o)
	}
	ts.health = health.New(nil)
	ts.f = New(box.Deps{Now: ts.clock.Now, Health: ts.health}, o)
	ts.f.res.AttemptTimeout = 200 * time.Millisecond
	ts.f.res.StaleAfter = 300 * time.Millisecond
	if err := ts.f.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.f.Run(ctx) }()
	ts.stop = func() { cancel(); <-done }
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) waitLists(t testing.TB) {
	t.Helper()
	select {
	case <-ts.f.listsLoaded:
	case <-time.After(5 * time.Second):
		t.Fatal("lists not loaded")
	}
}

// query sends one query to a zone's listener.
func (ts *testServer) query(t testing.TB, zone, name string, qtype uint16, tcp, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	r, _, err := c.Exchange(m, ts.addrs[zone])
	if err != nil {
		t.Fatalf("%s %s from %s: %v", name, dns.TypeToString[qtype], zone, err)
	}
	if r.Id != m.Id {
		t.Errorf("%s: answer ID %d, query ID %d", name, r.Id, m.Id)
	}
	return r
}

func ede(m *dns.Msg) (uint16, string, bool) {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.InfoCode, e.ExtraText, true
			}
		}
	}
	return 0, "", false
}

// warning returns the message of a raised health warning, or "".
func (ts *testServer) warning(code string) string {
	w, _ := ts.health.Get(code)
	return w.Message
}
