package dnsfilter

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestFastPathsMatchGeneralPath checks that the fast path for
// cached answers (stored wire format, patched) says exactly what the
// general path (decode, copy, encode) says, and stands aside when it must.
func TestFastPathsMatchGeneralPath(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	type tc struct {
		name    string
		qname   string
		qtype   uint16
		edns    bool
		do      bool
		wantUse bool
	}
	tests := []tc{
		{"plain A", "WwW.Example.Org.", dns.TypeA, false, false, true},
		{"A with EDNS", "www.example.org.", dns.TypeA, true, false, true},
		{"A with DO", "www.example.org.", dns.TypeA, true, true, true},
		{"NXDOMAIN with SOA", "nx.example.", dns.TypeA, true, false, true},
		{"safe-search CNAME target itself", "forcesafesearch.google.com.", dns.TypeA, false, false, true},
		{"CNAME to a blocked name", "cloak.example.", dns.TypeA, false, false, false},
		{"blocked name", "example.com.", dns.TypeA, false, false, true},
		{"blocked name with EDNS and DO", "WWW.example.com.", dns.TypeAAAA, true, true, true},
		{"deny list with EDNS", "x.school-deny.example.", dns.TypeA, true, false, true},
		{"canary with EDNS", "use-application-dns.net.", dns.TypeA, true, false, true},
		{"doh category added for minors", "doh.example.", dns.TypeHTTPS, true, false, true},
		{"DDR: general path", "_dns.resolver.arpa.", dns.TypeSVCB, true, false, false},
		{"safe search: general path", "www.google.com.", dns.TypeA, true, false, false},
		{"too large for UDP without EDNS", "big.example.", dns.TypeA, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := new(dns.Msg)
			req.SetQuestion(tt.qname, tt.qtype)
			if tt.edns {
				req.SetEdns0(1232, tt.do)
			}
			req.Id = 4242
			// Fill the cache through the general path.
			f := ts.f
			f.answer("peda", netip.MustParseAddr("127.0.0.1"), req.Copy(), false)
			ts.clock.Advance(7 * time.Second) // TTLs must be aged alike
			pkt, err := req.Pack()
			if err != nil {
				t.Fatal(err)
			}
			b, used := f.fastPath("peda", netip.MustParseAddr("127.0.0.1"), req, pkt, make([]byte, 0, 2048))
			if used != tt.wantUse {
				t.Fatalf("fast path used = %v, want %v", used, tt.wantUse)
			}
			if !used {
				return
			}
			fast := new(dns.Msg)
			if err := fast.Unpack(b); err != nil {
				t.Fatalf("fast answer does not decode: %v", err)
			}
			general, _ := f.answer("peda", netip.MustParseAddr("127.0.0.1"), req, false)
			general.Truncate(udpSize(req))
			gb, _ := general.Pack()
			g := new(dns.Msg)
			g.Unpack(gb)
			if fast.String() != g.String() {
				t.Errorf("fast path:\n%s\ngeneral path:\n%s", fast, g)
			}
		})
	}
}
