package dnsfilter

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// fakeLeases is a DHCP lease view the test changes at will.
type fakeLeases struct {
	mu      sync.Mutex
	version atomic.Uint64
	leases  []Lease
}

func (l *fakeLeases) LeasesVersion() uint64 { return l.version.Load() }

func (l *fakeLeases) NamedLeases() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.leases)
}

func (l *fakeLeases) add(zone, addr, client, host string) {
	l.mu.Lock()
	l.leases = append(l.leases, Lease{Zone: zone, Addr: netip.MustParseAddr(addr), Client: client, Hostname: host})
	l.mu.Unlock()
	l.version.Add(1)
}

const (
	boxFQDN = "passerelle-0599999y.home.arpa."
	pedaD   = "peda." + boxFQDN
	guestD  = "guest." + boxFQDN
)

// TestNothingPrivateLeavesTheBox is issue 11's acceptance table: through
// the real server, private reverse lookups and local names are answered
// on the box and none of them reaches the upstream; lease host names
// resolve both ways; a forwarded reverse zone still reaches its forward.
func TestNothingPrivateLeavesTheBox(t *testing.T) {
	academy := startUpstream(t) // the conditional forward (through the tunnel)
	leases := &fakeLeases{}
	leases.add("peda", "10.10.0.50", "aa:00:00:00:00:01", "Laptop-Jean")
	leases.add("peda", "10.10.0.51", "aa:00:00:00:00:02", "laptop-jean") // second comer: a suffix
	leases.add("peda", "10.10.0.52", "aa:00:00:00:00:03", "iPad_Chloe.home")
	leases.add("peda", "10.10.0.53", "aa:00:00:00:00:04", "WPAD") // never a name
	leases.add("peda", "10.10.0.54", "aa:00:00:00:00:05", "passerelle-0599999y")
	leases.add("peda", "10.10.0.55", "aa:00:00:00:00:06", "Printer-CDI") // a reservation holds the name
	leases.add("guest", "10.30.0.20", "aa:00:00:00:00:07", "phone")
	ts := startServerOpts(t, testLists(t, t.TempDir(), nil), func(y string) string {
		y = strings.Replace(y, "address: 10.10.0.1, dns_profile: eleves}",
			`address: 10.10.0.1, dns_profile: eleves, dhcp: {reservations: [{name: Printer_CDI, mac: "00:11:22:33:44:55", address: 10.10.0.5}]}}`, 1)
		return strings.Replace(y, "  rate_limit: 100000\n", "  rate_limit: 100000\n  conditional_forwards:\n"+
			"    - {domain: 16.172.in-addr.arpa, servers: [\""+academy.addr.String()+"\"]}\n"+
			"    - {domain: 8.e.f.ip6.arpa, servers: [\""+academy.addr.String()+"\"]}\n", 1)
	}, func(o *Options) { o.Leases = leases })
	ts.waitLists(t)

	type want struct {
		rcode  int
		answer string // substring of the answer section ("" none expected)
		soa    string // owner of the SOA expected in authority ("" none)
	}
	nx := func(soa string) want { return want{rcode: dns.RcodeNameError, soa: soa} }
	rev := func(a string) string { r, _ := dns.ReverseAddr(a); return r }
	tests := []struct {
		name  string
		zone  string
		qname string
		qtype uint16
		want  want
	}{
		// Private reverse zones (RFC 6303, RFC 7793): every prefix.
		{"10/8", "peda", rev("10.99.1.2"), dns.TypePTR, nx("10.in-addr.arpa.")},
		{"172.16/12 low", "peda", rev("172.17.0.9"), dns.TypePTR, nx("17.172.in-addr.arpa.")},
		{"172.16/12 high", "peda", rev("172.31.255.1"), dns.TypePTR, nx("31.172.in-addr.arpa.")},
		{"192.168/16", "peda", rev("192.168.1.20"), dns.TypePTR, nx("168.192.in-addr.arpa.")},
		{"100.64/10 low", "peda", rev("100.64.0.1"), dns.TypePTR, nx("64.100.in-addr.arpa.")},
		{"100.64/10 high", "admin", rev("100.127.3.4"), dns.TypePTR, nx("127.100.in-addr.arpa.")},
		{"169.254/16", "peda", rev("169.254.10.10"), dns.TypePTR, nx("254.169.in-addr.arpa.")},
		{"127/8", "peda", rev("127.0.0.5"), dns.TypePTR, nx("127.in-addr.arpa.")},
		{"fc00::/7 fd", "peda", rev("fd12:3456::1"), dns.TypePTR, nx("d.f.ip6.arpa.")},
		{"fc00::/7 fc", "guest", rev("fc00::42"), dns.TypePTR, nx("c.f.ip6.arpa.")},
		{"fe80::/10 9", "peda", rev("fe9a::1"), dns.TypePTR, nx("9.e.f.ip6.arpa.")},
		{"fe80::/10 b", "peda", rev("febf::1"), dns.TypePTR, nx("b.e.f.ip6.arpa.")},
		{"SOA query of a private address", "peda", rev("192.168.0.1"), dns.TypeSOA, nx("168.192.in-addr.arpa.")},
		{"zone apex SOA", "peda", "10.in-addr.arpa.", dns.TypeSOA, want{rcode: dns.RcodeSuccess, answer: "10.in-addr.arpa.\t60\tIN\tSOA\t10.in-addr.arpa. nobody.invalid."}},
		{"a pupil's device without a name", "peda", rev("10.10.0.99"), dns.TypePTR, nx("10.in-addr.arpa.")},
		{"empty non-terminal above a lease", "peda", "0.10.10.in-addr.arpa.", dns.TypePTR, want{rcode: dns.RcodeSuccess, soa: "10.in-addr.arpa."}},
		{"loopback", "peda", rev("127.0.0.1"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\tlocalhost."}},
		{"::1", "peda", rev("::1"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\tlocalhost."}},
		// The box's own addresses.
		{"box in peda", "peda", rev("10.10.0.1"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\t" + boxFQDN}},
		{"box in admin, asked from peda", "peda", rev("10.20.0.1"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\t" + boxFQDN}},
		// Lease and reservation names, both ways.
		{"lease PTR", "peda", rev("10.10.0.50"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\tlaptop-jean." + pedaD}},
		{"second comer's PTR", "admin", rev("10.10.0.51"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\tlaptop-jean-2." + pedaD}},
		{"reservation PTR", "peda", rev("10.10.0.5"), dns.TypePTR, want{rcode: dns.RcodeSuccess, answer: "PTR\tprinter-cdi." + pedaD}},
		{"lease A", "peda", "laptop-jean." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.50"}},
		{"lease A, case kept", "peda", "LAPTOP-Jean.Peda.PASSERELLE-0599999Y.home.arpa.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "LAPTOP-Jean.Peda.PASSERELLE-0599999Y.home.arpa.\t60\tIN\tA\t10.10.0.50"}},
		{"same name, second comer", "peda", "laptop-jean-2." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.51"}},
		{"sanitised name", "peda", "ipad-chloe." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.52"}},
		{"box's name taken by a device", "peda", "passerelle-0599999y-2." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.54"}},
		{"reservation A", "peda", "printer-cdi." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.5"}},
		{"device named like a reservation", "peda", "printer-cdi-2." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.55"}},
		{"lease AAAA: no data", "peda", "laptop-jean." + pedaD, dns.TypeAAAA, want{rcode: dns.RcodeSuccess, soa: "home.arpa."}},
		{"guest device seen from peda", "peda", "phone." + guestD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.30.0.20"}},
		{"guests do not see pupils' devices", "guest", "laptop-jean." + pedaD, dns.TypeA, nx("home.arpa.")},
		{"guests do not get pupils' PTR", "guest", rev("10.10.0.50"), dns.TypePTR, nx("10.in-addr.arpa.")},
		// The box and the zones.
		{"box from peda", "peda", boxFQDN, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.1"}},
		{"box from admin", "admin", boxFQDN, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.20.0.1"}},
		{"box through the search domain", "peda", "passerelle-0599999y." + pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.1"}},
		{"zone name", "admin", pedaD, dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t10.10.0.1"}},
		{"local domain apex", "peda", "home.arpa.", dns.TypeA, want{rcode: dns.RcodeSuccess, soa: "home.arpa."}},
		// Unknown and dangerous local names.
		{"intranet under the search domain", "peda", "intranet." + pedaD, dns.TypeA, nx("home.arpa.")},
		{"wpad under the search domain", "peda", "wpad." + pedaD, dns.TypeA, nx("home.arpa.")},
		{"wpad device name", "peda", "wpad." + pedaD, dns.TypeAAAA, nx("home.arpa.")},
		{"no wpad with a suffix either", "peda", "wpad-2." + pedaD, dns.TypeA, nx("home.arpa.")},
		{"the wpad device has no PTR", "peda", rev("10.10.0.53"), dns.TypePTR, nx("10.in-addr.arpa.")},
		{"wpad under the box", "admin", "wpad." + boxFQDN, dns.TypeA, nx("home.arpa.")},
		{"unknown under the local domain", "peda", "nas.home.arpa.", dns.TypeA, nx("home.arpa.")},
		{"wpad single label", "peda", "wpad.", dns.TypeA, nx(".")},
		{"single label device", "peda", "laptop-jean.", dns.TypeA, nx(".")},
		{"single label intranet", "admin", "intranet.", dns.TypeAAAA, nx(".")},
		{"the search domain of earlier versions", "peda", "intranet.peda.passerelle-0599999y.lan.", dns.TypeA, nx("lan.")},
		{"private-use suffix", "admin", "nas.internal.", dns.TypeA, nx("internal.")},
		{"mDNS name", "peda", "x.local.", dns.TypeA, nx("local.")},
		{"mDNS service", "peda", "_ipp._tcp.local.", dns.TypePTR, nx("local.")},
		{"localhost A", "peda", "localhost.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t127.0.0.1"}},
		{"localhost AAAA", "peda", "localhost.", dns.TypeAAAA, want{rcode: dns.RcodeSuccess, answer: "AAAA\t::1"}},
		{"name under localhost", "guest", "app.localhost.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "A\t127.0.0.1"}},
		{"localhost other type", "peda", "localhost.", dns.TypeMX, want{rcode: dns.RcodeSuccess, soa: "localhost."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, tcp := range []bool{false, true} {
				r := ts.query(t, tt.zone, tt.qname, tt.qtype, tcp, true)
				if r.Rcode != tt.want.rcode {
					t.Errorf("rcode %s, want %s\n%s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.want.rcode], r)
				}
				var ans strings.Builder
				for _, rr := range r.Answer {
					ans.WriteString(rr.String() + "\n")
				}
				switch {
				case tt.want.answer == "" && len(r.Answer) > 0:
					t.Errorf("answer %q, want none", ans.String())
				case !strings.Contains(ans.String(), tt.want.answer):
					t.Errorf("answer %q, want it to contain %q", ans.String(), tt.want.answer)
				}
				if tt.want.soa != "" {
					if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Name != tt.want.soa || r.Ns[0].Header().Ttl != localTTL {
						t.Errorf("authority %v, want the SOA of %s (negative caching)", r.Ns, tt.want.soa)
					}
				}
				if !r.Authoritative {
					t.Error("a local answer is authoritative")
				}
			}
		})
	}
	if got := ts.up.received(); len(got) != 0 {
		t.Errorf("reached the upstream: %v", got)
	}
	if got := academy.received(); len(got) != 0 {
		t.Errorf("reached the conditional forward: %v", got)
	}

	// A new lease answers at once, both ways.
	leases.add("peda", "10.10.0.60", "aa:00:00:00:00:08", "tablet-12")
	if r := ts.query(t, "peda", "tablet-12."+pedaD, dns.TypeA, false, false); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.10.0.60") {
		t.Errorf("new lease: %v", r)
	}
	if r := ts.query(t, "peda", rev("10.10.0.60"), dns.TypePTR, false, false); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "tablet-12."+pedaD) {
		t.Errorf("new lease PTR: %v", r)
	}
	// The first comer keeps its name when a lease is read again.
	leases.mu.Lock()
	leases.leases[0].Addr = netip.MustParseAddr("10.10.0.70") // same device, other address
	leases.mu.Unlock()
	leases.version.Add(1)
	if r := ts.query(t, "peda", "laptop-jean."+pedaD, dns.TypeA, false, false); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.10.0.70") {
		t.Errorf("first comer lost its name: %v", r)
	}

	// Reverse zones the config forwards go to their forward, and only
	// there; public names still reach the upstream.
	for _, q := range []struct {
		name  string
		qtype uint16
		to    *fakeUpstream
	}{
		{rev("172.16.5.4"), dns.TypePTR, academy},
		{rev("fe80::1"), dns.TypePTR, academy},
		{rev("193.51.24.1"), dns.TypePTR, ts.up},
		{"fr.", dns.TypeDS, ts.up},
		{"www.example.org.", dns.TypeA, ts.up},
	} {
		ts.query(t, "peda", q.name, q.qtype, false, true)
		if !slices.Contains(q.to.received(), q.name+" "+dns.TypeToString[q.qtype]) {
			t.Errorf("%s %s did not reach its server", q.name, dns.TypeToString[q.qtype])
		}
	}
	if got := ts.up.received(); slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "172.in-addr") || strings.Contains(s, "e.f.ip6") }) {
		t.Errorf("a forwarded reverse zone reached the upstream: %v", got)
	}
	if got := academy.received(); len(got) != 2 {
		t.Errorf("the forward got %v, want only its two reverse names", got)
	}
}

// TestLocalHostsNames checks the naming rules apart from the server.
func TestLocalHostsNames(t *testing.T) {
	for in, want := range map[string]string{
		"Laptop-Jean":           "laptop-jean",
		"iPad_de_Chloe":         "ipad-de-chloe",
		"host.example.fr":       "host",
		"-x-":                   "x",
		"___":                   "",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
	} {
		if got := sanitizeLabel(in); got != want {
			t.Errorf("sanitizeLabel(%q) = %q, want %q", in, got, want)
		}
	}
	lp := &LocalPlan{Domain: "home.arpa", BoxName: "box.home.arpa", Zones: []LocalZone{{Name: "z", Domain: "z.box.home.arpa"}}}
	long := strings.Repeat("b", 63)
	tab := buildHosts(lp, []Lease{
		{Zone: "z", Addr: netip.MustParseAddr("10.0.0.2"), Client: "1", Hostname: long},
		{Zone: "z", Addr: netip.MustParseAddr("10.0.0.3"), Client: "2", Hostname: long},
		{Zone: "z", Addr: netip.MustParseAddr("10.0.0.4"), Client: "3", Hostname: "isatap"},
	}, nil, 1, newClock().Now())
	if e := tab.byAddr[netip.MustParseAddr("10.0.0.3")]; e.name != strings.Repeat("b", 61)+"-2.z.box.home.arpa" {
		t.Errorf("suffixed long name %q", e.name)
	}
	if _, ok := tab.byAddr[netip.MustParseAddr("10.0.0.4")]; ok {
		t.Error("isatap named")
	}
	// Rebuilt with the first device at another address (sorting after
	// the second): each keeps the name it had.
	tab2 := buildHosts(lp, []Lease{
		{Zone: "z", Addr: netip.MustParseAddr("10.0.0.3"), Client: "2", Hostname: long},
		{Zone: "z", Addr: netip.MustParseAddr("10.0.0.9"), Client: "1", Hostname: long},
	}, tab, 2, newClock().Now())
	if e := tab2.byAddr[netip.MustParseAddr("10.0.0.9")]; e.name != long+".z.box.home.arpa" {
		t.Errorf("first comer renamed: %q", e.name)
	}
	if e := tab2.byAddr[netip.MustParseAddr("10.0.0.3")]; !strings.HasSuffix(e.name, "-2.z.box.home.arpa") {
		t.Errorf("second comer renamed: %q", e.name)
	}
}
