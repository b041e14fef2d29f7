package lab

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDNSZone runs the lab's DNS handler on the loopback of the current
// namespace; it needs no privileges.
func TestDNSZone(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback UDP: %v", err)
	}
	z := newDNSZone(labRecords())
	s := &servers{logger: slog.New(slog.DiscardHandler)}
	srv := &dns.Server{PacketConn: pc, Handler: z, Net: "udp"}
	if err := s.serveDNS("test", srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.stop(ctx); err != nil {
			t.Error(err)
		}
	})

	c := new(dns.Client)
	query := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := c.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r
	}

	for name, want := range map[string]string{
		"www.lab.test.":      "203.0.113.10",
		"WWW.Lab.Test.":      "203.0.113.10",
		"internet.lab.test.": "203.0.113.10",
		"academy.lab.test.":  "203.0.113.100",
	} {
		r := query(name, dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			t.Errorf("%s: rcode %s aa %v answers %d", name, dns.RcodeToString[r.Rcode], r.Authoritative, len(r.Answer))
			continue
		}
		if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != want {
			t.Errorf("%s: answer %v, want %s", name, r.Answer[0], want)
		}
	}
	if r := query("nope.lab.test.", dns.TypeA); r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 {
		t.Errorf("unknown name in zone: rcode %s aa %v authority %d, want authoritative NXDOMAIN with SOA",
			dns.RcodeToString[r.Rcode], r.Authoritative, len(r.Ns))
	}
	if r := query("example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError || r.Authoritative {
		t.Errorf("name outside zone: rcode %s aa %v, want non-authoritative NXDOMAIN", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	if r := query("www.lab.test.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("AAAA of A-only name: rcode %s answers %d, want NODATA", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}
