package dnsfilter

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkHandleUDP measures the work for one datagram without the
// system calls: decode, policy, answer (blocked, or from the cache),
// encode.
func BenchmarkHandleUDP(b *testing.B) {
	ts := startServer(b, testLists(b, b.TempDir(), nil), nil)
	ts.waitLists(b)
	ts.f.limiter.setRate(0)
	ts.query(b, "peda", "www.example.org.", dns.TypeA, false, true) // cache it
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	zm := ts.f.zoneMetrics("peda")
	client := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for _, bc := range []struct{ name, qname string }{{"blocked", "www.example.com."}, {"cached", "www.example.org."}} {
		m := new(dns.Msg)
		m.SetQuestion(bc.qname, dns.TypeA)
		m.SetEdns0(1232, false)
		pkt, _ := m.Pack()
		buf := make([]byte, 0, 1800)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if ts.f.handleUDP("peda", zm, conn, pkt, client, buf) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
