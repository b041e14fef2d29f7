package dnsfilter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestCorrectnessThroughServer is the filter's acceptance table: every
// query goes through the real server, over the network, to a zone's
// listener.
func TestCorrectnessThroughServer(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	type want struct {
		rcode  int
		answer string // substring of the answer section's text, "" for none expected
		edeHas string // substring of the EDE text, "" for no EDE
		nodata bool   // NOERROR with no record
	}
	tests := []struct {
		name  string
		zone  string
		qname string
		qtype uint16
		want  want
	}{
		{"blocked name", "peda", "example.com.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult (UT1) of profile eleves"}},
		{"subdomain of a blocked name", "peda", "a.b.www.example.com.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"blocked for AAAA and HTTPS too", "peda", "www.example.com.", dns.TypeHTTPS, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"allowed parent of a blocked name", "peda", "example.org.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"sibling of a blocked name", "peda", "good.example.org.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"same ending letters are not a subdomain", "peda", "xexample.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"blocked category of another zone's profile", "peda", "casino.example.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category gambling"}},
		{"category not in the zone's profile", "admin", "example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"deny list", "peda", "x.school-deny.example.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "deny list of profile eleves"}},
		{"allow beats deny", "peda", "fine.school-deny.example.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"allow beats a category", "peda", "kids.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"white category allows a subdomain of a black entry", "peda", "www.lib.example.net.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"black entry outside the white one", "peda", "other.example.net.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"white wins a tie", "peda", "both.example.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"doh category blocked for minors", "peda", "doh.example.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category doh"}},
		{"vpn category blocked for minors", "peda", "x.vpn.example.", dns.TypeAAAA, want{rcode: dns.RcodeNameError, edeHas: "category vpn"}},
		{"doh not blocked for staff", "admin", "doh.example.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"safe search google", "peda", "www.google.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "CNAME\tforcesafesearch.google.com.\n" + "forcesafesearch.google.com.\t300\tIN\tA\t216.239.38.120"}},
		{"safe search google.fr", "peda", "google.fr.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "forcesafesearch.google.com."}},
		{"safe search youtube strict", "peda", "www.youtube.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "restrict.youtube.com.\t300\tIN\tA\t216.239.38.120"}},
		{"safe search youtube moderate", "admin", "m.youtube.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "restrictmoderate.youtube.com.\t300\tIN\tA\t216.239.38.119"}},
		{"safe search bing", "peda", "www.bing.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "strict.bing.com.\t300\tIN\tA\t204.79.197.220"}},
		{"safe search duckduckgo", "peda", "duckduckgo.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "safe.duckduckgo.com.\t300\tIN\tA\t52.142.124.215"}},
		{"safe search qwant", "peda", "www.qwant.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "safeapi.qwant.com."}},
		{"safe search ecosia", "peda", "www.ecosia.org.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "strict-safe-search.ecosia.org."}},
		{"safe search covers HTTPS records", "peda", "www.google.com.", dns.TypeHTTPS, want{rcode: dns.RcodeSuccess, answer: "CNAME\tforcesafesearch.google.com."}},
		{"firefox DoH canary", "peda", "use-application-dns.net.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "resolver bypass"}},
		{"private relay canary", "peda", "mask.icloud.com.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "resolver bypass"}},
		{"private relay h2 canary", "guest", "mask-h2.icloud.com.", dns.TypeAAAA, want{rcode: dns.RcodeNameError, edeHas: "resolver bypass"}},
		{"canary answered for staff", "admin", "use-application-dns.net.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "192.0.2.1"}},
		{"DDR gets no answer", "peda", "_dns.resolver.arpa.", dns.TypeSVCB, want{rcode: dns.RcodeSuccess, nodata: true}},
		{"DDR gets no answer for staff too", "admin", "_dns.resolver.arpa.", dns.TypeSVCB, want{rcode: dns.RcodeSuccess, nodata: true}},
		{"CNAME to a blocked name", "peda", "cloak.example.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"block page answer", "guest", "example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, answer: "example.com.\t60\tIN\tA\t127.0.30.1", edeHas: "category adult (UT1) of profile invites"}},
		{"block page: no AAAA", "guest", "example.com.", dns.TypeAAAA, want{rcode: dns.RcodeSuccess, nodata: true, edeHas: "category adult"}},
		{"upper case query blocked", "peda", "WWW.EXAMPLE.COM.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"trailing dot and case mixed", "peda", "Bad.Example.ORG.", dns.TypeA, want{rcode: dns.RcodeNameError, edeHas: "category adult"}},
		{"upstream NXDOMAIN passed on", "peda", "nx.example.", dns.TypeA, want{rcode: dns.RcodeNameError}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.query(t, tt.zone, tt.qname, tt.qtype, false, true)
			if r.Rcode != tt.want.rcode {
				t.Errorf("rcode %s, want %s\n%s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.want.rcode], r)
			}
			if r.Question[0].Name != tt.qname {
				t.Errorf("question %q, want the client's %q", r.Question[0].Name, tt.qname)
			}
			var ans strings.Builder
			for _, rr := range r.Answer {
				ans.WriteString(rr.String() + "\n")
			}
			if tt.want.answer != "" && !strings.Contains(ans.String(), tt.want.answer) {
				t.Errorf("answer:\n%s\nwant it to contain %q", ans.String(), tt.want.answer)
			}
			if tt.want.nodata && len(r.Answer) != 0 {
				t.Errorf("want no answer, got:\n%s", ans.String())
			}
			code, text, ok := ede(r)
			switch {
			case tt.want.edeHas == "" && ok && code != dns.ExtendedErrorCodeStaleAnswer:
				t.Errorf("unexpected EDE %d %q", code, text)
			case tt.want.edeHas != "" && (!ok || code != dns.ExtendedErrorCodeBlocked || !strings.Contains(text, tt.want.edeHas)):
				t.Errorf("EDE = %v %d %q, want Blocked (15) with %q", ok, code, text, tt.want.edeHas)
			}
		})
	}
}

func TestLargeAnswerTruncatedOverUDPCompleteOverTCP(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	udp := ts.query(t, "peda", "big.example.", dns.TypeA, false, false)
	if !udp.Truncated || len(udp.Answer) >= 100 {
		t.Errorf("UDP without EDNS: TC=%v with %d records, want truncated", udp.Truncated, len(udp.Answer))
	}
	if msgLen(udp) > dns.MinMsgSize {
		t.Errorf("UDP answer %d bytes, over 512", msgLen(udp))
	}
	edns := ts.query(t, "peda", "big.example.", dns.TypeA, false, true)
	if !edns.Truncated || msgLen(edns) > 1232 {
		t.Errorf("UDP with EDNS: TC=%v, %d bytes; want truncated to at most 1232", edns.Truncated, msgLen(edns))
	}
	tcp := ts.query(t, "peda", "big.example.", dns.TypeA, true, true)
	if tcp.Truncated || len(tcp.Answer) != 100 {
		t.Errorf("TCP: TC=%v with %d records, want all 100", tcp.Truncated, len(tcp.Answer))
	}
}

func msgLen(m *dns.Msg) int { m.Compress = true; b, _ := m.Pack(); return len(b) }

func TestCaseAndIDPreservedOnCachedAnswers(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	ts.query(t, "peda", "www.example.org.", dns.TypeA, false, true) // fill the cache
	r := ts.query(t, "peda", "WwW.ExAmPlE.oRg.", dns.TypeA, false, true)
	if r.Question[0].Name != "WwW.ExAmPlE.oRg." || len(r.Answer) != 1 || r.Answer[0].Header().Name != "WwW.ExAmPlE.oRg." {
		t.Errorf("case not preserved:\n%s", r)
	}
	if ts.up.queries.Load() != 1 {
		t.Errorf("upstream asked %d times, want 1 (cached)", ts.up.queries.Load())
	}
}

func TestMalformedQueriesGetErrorsNotAnswers(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	send := func(m *dns.Msg) *dns.Msg {
		c := &dns.Client{Net: "udp", Timeout: time.Second}
		r, _, err := c.Exchange(m, ts.addrs["peda"])
		if err != nil {
			t.Fatalf("%v", err)
		}
		return r
	}
	two := new(dns.Msg)
	two.SetQuestion("a.example.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	chaos := new(dns.Msg)
	chaos.SetQuestion("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	axfr := new(dns.Msg)
	axfr.SetQuestion("example.org.", dns.TypeAXFR)
	notify := new(dns.Msg)
	notify.SetNotify("example.org.")
	badvers := new(dns.Msg)
	badvers.SetQuestion("example.org.", dns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	for _, tt := range []struct {
		name string
		m    *dns.Msg
		want int
	}{
		{"two questions", two, dns.RcodeFormatError},
		{"CHAOS class", chaos, dns.RcodeRefused},
		{"zone transfer", axfr, dns.RcodeRefused},
		{"NOTIFY opcode", notify, dns.RcodeNotImplemented},
		{"EDNS version 1", badvers, dns.RcodeBadVers},
	} {
		if r := send(tt.m); r.Rcode != tt.want {
			t.Errorf("%s: rcode %s, want %s", tt.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.want])
		}
	}
}

func TestRateLimitDropsFloodFromOneClient(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), func(y string) string {
		return strings.Replace(y, "rate_limit: 100000", "rate_limit: 10", 1)
	})
	ts.waitLists(t)
	answered := 0
	c := &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	for i := range 30 {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeA)
		m.Id = uint16(i + 1)
		if _, _, err := c.Exchange(m, ts.addrs["peda"]); err == nil {
			answered++
		}
	}
	// The clock is frozen: the bucket holds one second's worth (10).
	if answered != 10 {
		t.Errorf("%d of 30 queries answered, want 10 (rate limit 10/s, burst 10)", answered)
	}
}

func TestServeStaleThroughServer(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	fresh := ts.query(t, "peda", "www.example.org.", dns.TypeA, false, true)
	if len(fresh.Answer) != 1 {
		t.Fatalf("no answer:\n%s", fresh)
	}
	ts.up.down.Store(true) // every upstream cut
	ts.clock.Advance(time.Hour)
	r := ts.query(t, "peda", "www.example.org.", dns.TypeA, false, true)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("cached name not answered with upstreams cut:\n%s", r)
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 30 {
		t.Errorf("stale TTL %d, want 30 (RFC 8767)", ttl)
	}
	if code, _, ok := ede(r); !ok || code != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("stale answer without EDE Stale Answer (3): %v %d", ok, code)
	}
	if r := ts.query(t, "peda", "never-cached.example.", dns.TypeA, false, true); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("uncached name with upstreams cut: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	// Blocking does not depend on upstreams.
	if r := ts.query(t, "peda", "example.com.", dns.TypeA, false, true); r.Rcode != dns.RcodeNameError {
		t.Errorf("blocked name with upstreams cut: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestFailClosedUntilListsLoad(t *testing.T) {
	dir := t.TempDir() // no lists yet
	ts := startServer(t, dir, nil)
	time.Sleep(50 * time.Millisecond) // the first load attempt fails
	r := ts.query(t, "peda", "www.example.org.", dns.TypeA, false, true)
	if _, text, _ := ede(r); r.Rcode != dns.RcodeNameError || !strings.Contains(text, "lists not loaded") {
		t.Errorf("minors' zone without lists: %s %q, want NXDOMAIN (fail closed)", dns.RcodeToString[r.Rcode], text)
	}
	if r := ts.query(t, "peda", "kids.example.com.", dns.TypeA, false, true); r.Rcode != dns.RcodeSuccess {
		t.Errorf("allow-listed name without lists: %s, want it answered", dns.RcodeToString[r.Rcode])
	}
	if r := ts.query(t, "admin", "www.example.org.", dns.TypeA, false, true); r.Rcode != dns.RcodeSuccess {
		t.Errorf("fail_closed: false profile without lists: %s, want answered", dns.RcodeToString[r.Rcode])
	}
	testLists(t, dir, nil)
	if err := ts.f.Apply(context.Background(), ts.plan); err != nil { // SIGHUP
		t.Fatal(err)
	}
	ts.waitLists(t)
	if r := ts.query(t, "peda", "www.example.org.", dns.TypeA, false, true); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after lists loaded: %s", dns.RcodeToString[r.Rcode])
	}
}
