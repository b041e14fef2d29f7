package dnsfilter

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// fakeWriter is an in-memory dns.ResponseWriter.
type fakeWriter struct {
	remote net.Addr
	out    *dns.Msg
	closed bool
}

func (w *fakeWriter) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(10, 10, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr      { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error { w.out = m; _, err := m.Pack(); return err }
func (w *fakeWriter) Write(b []byte) (int, error) {
	return len(b), nil
}
func (w *fakeWriter) Close() error        { w.closed = true; return nil }
func (w *fakeWriter) TsigStatus() error   { return nil }
func (w *fakeWriter) TsigTimersOnly(bool) {}
func (w *fakeWriter) Hijack()             {}

// FuzzQuery feeds arbitrary packets to the query path (decode, policy,
// block and safe-search answers, truncation, encode): it must never panic
// and every answer it writes must encode.
func FuzzQuery(f *testing.F) {
	seeds := []*dns.Msg{}
	add := func(name string, qt uint16, edns bool) {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		if edns {
			m.SetEdns0(4096, true)
		}
		seeds = append(seeds, m)
	}
	add("example.com.", dns.TypeA, false)
	add("WWW.EXAMPLE.COM.", dns.TypeAAAA, true)
	add("www.google.com.", dns.TypeHTTPS, true)
	add("use-application-dns.net.", dns.TypeA, true)
	add("_dns.resolver.arpa.", dns.TypeSVCB, false)
	add("kids.example.com.", dns.TypeA, true)
	add(".", dns.TypeNS, false)
	add(`a\.b\000.example.`, dns.TypeA, true)
	for _, m := range seeds {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}, true)
	f.Add([]byte("garbage that is not a DNS message"), false)

	ts := startServer(f, testLists(f, f.TempDir(), nil), func(y string) string {
		// No upstream answers: the fuzzer exercises our code, not the
		// network.
		return y
	})
	ts.waitLists(f)
	ts.up.down.Store(true)
	ts.f.res.AttemptTimeout = 1
	ts.f.limiter.setRate(0)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0") // where slow answers go
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	zm := ts.f.zoneMetrics("peda")
	client := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} // discard
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		// The UDP path takes raw datagrams.
		if b := ts.f.handleUDP("peda", zm, conn, pkt, client, make([]byte, 0, 1800)); b != nil {
			var m dns.Msg
			if err := m.Unpack(b); err != nil {
				t.Fatalf("UDP answer does not decode: %v", err)
			}
			if len(b) > 1232 {
				t.Fatalf("UDP answer of %d bytes", len(b))
			}
		}
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the server drops what does not decode
		}
		w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(10, 10, 0, 50), Port: 40000}}
		if tcp {
			w.remote = &net.TCPAddr{IP: net.IPv4(10, 10, 0, 50), Port: 40000}
		}
		ts.f.serve("peda", w, req)
		if w.out != nil {
			if _, err := w.out.Pack(); err != nil {
				t.Fatalf("answer does not encode: %v\n%s", err, w.out)
			}
		}
	})
}
