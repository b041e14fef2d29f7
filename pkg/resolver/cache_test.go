package resolver

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// answerTXT answers TXT queries with about size bytes of TXT records
// (truncated over UDP: the resolver asks again over TCP).
func answerTXT(size int) func(w dns.ResponseWriter, req *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		name := req.Question[0].Name
		chunk := strings.Repeat("x", 250)
		for n := 0; n < size; n += 8 * 251 {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600},
				Txt: []string{chunk, chunk, chunk, chunk, chunk, chunk, chunk, chunk}})
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && m.Len() > 1232 {
			m.Answer, m.Truncated = nil, true
		}
		w.WriteMsg(m)
	}
}

// TestCacheByteBound is the flood of issue 12: names of a domain the
// attacker controls, each answered with 60 KB. None is kept (answers
// over 8 KB are served, not cached); answers of 7 KB fill the cache up to
// its byte budget, not its entry count, and the heap stays near it.
func TestCacheByteBound(t *testing.T) {
	clock := newClock()
	big := startUpstream(t, answerTXT(60_000))
	const budget = 1 << 20
	r := newResolver(t, clock, Config{Upstreams: []Upstream{{Addr: big.addr}}, CacheSize: 100_000, CacheBytes: budget})
	for i := range 200 {
		res := resolve(t, r, fmt.Sprintf("n%d.flood.example", i), dns.TypeTXT)
		if res.Msg.Len() < 60_000 {
			t.Fatalf("answer of %d bytes, want the whole 60 KB", res.Msg.Len())
		}
	}
	if n, b := r.CacheLen(), r.CacheBytes(); n != 0 || b != 0 {
		t.Errorf("60 KB answers cached: %d entries, %d bytes", n, b)
	}

	medium := startUpstream(t, answerTXT(7_000))
	r.Configure(Config{Upstreams: []Upstream{{Addr: medium.addr}}, CacheSize: 100_000, CacheBytes: budget, MaxTTL: r.cfg.Load().MaxTTL})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1000 {
		resolve(t, r, fmt.Sprintf("m%d.flood.example", i), dns.TypeTXT)
		if b := r.CacheBytes(); b > budget {
			t.Fatalf("after %d answers the cache holds %d bytes, over its %d budget", i+1, b, budget)
		}
	}
	n, b := r.CacheLen(), r.CacheBytes()
	t.Logf("7 KB answers: %d of 1000 cached, %d bytes estimated", n, b)
	if n < 40 || n > 100 || b < budget/2 {
		t.Errorf("%d entries, %d bytes: want the budget used, about 1 MiB / 14 KiB entries", n, b)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d bytes", grew)
	if grew > 3*budget {
		t.Errorf("heap grew by %d bytes for a %d-byte budget: the estimate is off", grew, budget)
	}
	// Still a cache: the most recent names answer without the upstream.
	q0 := medium.queries.Load()
	resolve(t, r, "m999.flood.example", dns.TypeTXT)
	if medium.queries.Load() != q0 {
		t.Error("most recent answer not served from the cache")
	}
}
