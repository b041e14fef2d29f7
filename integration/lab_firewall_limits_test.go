package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"passerelle/pkg/lab"
)

// These tests check the firewall's limits and the DNS filter's bypass
// defence in the lab (issue 12): per-source SYN meters that keep port
// forwards answering during a flood, the ping meter that also holds for a
// ping under way, and public resolvers refused on every port to zones
// protecting minors.

// Internet hosts the tests add to the lab's internet namespace.
var (
	flooderAddr = netip.MustParseAddr("203.0.113.66")
	visitorAddr = netip.MustParseAddr("203.0.113.77")
)

// forwardPort is the public port of the demo variant's port forward, to
// the admin zone's lab client (its 100th host).
const forwardPort = 8080

// startForwardLab runs the demo config with a port forward to the admin
// client, a TCP server there, and the flooder and visitor addresses in the
// internet namespace.
func startForwardLab(t *testing.T) (*fwLab, netip.Addr) {
	t.Helper()
	demo := readDemo(t)
	old := "firewall:\n  forwardings:\n"
	if !strings.Contains(demo, old) {
		t.Fatal("demo.yaml changed: no firewall.forwardings to extend")
	}
	cfg := strings.Replace(demo, old, fmt.Sprintf("firewall:\n  port_forwards:\n    - {name: web, protocol: tcp, port: \"%d\", to_address: 10.20.0.100}\n  forwardings:\n", forwardPort), 1)
	file := t.TempDir() + "/demo-forward.yaml"
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	fl := startFirewallLab(t, "demo", file)
	inet := fl.lab.Namespace(lab.RoleInternet)
	for _, a := range []netip.Addr{flooderAddr, visitorAddr} {
		ipCmd(t, "-n", inet, "addr", "add", netip.PrefixFrom(a, 32).String(), "dev", "lo")
	}
	server := fl.client(t, "admin")
	ln, err := lab.Listen(fl.lab.Namespace(lab.RoleClient("admin")), "tcp4", net.JoinHostPort(server.String(), fmt.Sprint(forwardPort)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "web")
			c.Close()
		}
	}()
	return fl, fl.uplink(t, "renater").Address.Addr()
}

// synFlood sends TCP SYNs from src (an address of namespace ns) to dst at
// about rate per second for d, on a raw socket: destination ports are
// picked in ports, source ports at random. It returns how many it sent.
// Bounded in time and count, and aimed at lab addresses only.
func synFlood(t *testing.T, ns string, src, dst netip.Addr, ports [2]uint16, rate int, d time.Duration) int {
	t.Helper()
	if !dst.Is4() || !(netip.MustParsePrefix("192.0.2.0/24").Contains(dst)) {
		t.Fatalf("flood target %v is not a lab uplink address", dst)
	}
	var fd int
	err := lab.RunInNamespace(ns, func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrInet4{Addr: dst.As4()}
	limit := int(float64(rate) * d.Seconds())
	start := time.Now()
	sent := 0
	for sent < limit && time.Since(start) < d+time.Second {
		// Catch up with the schedule, then sleep a millisecond.
		due := min(limit, int(time.Since(start).Seconds()*float64(rate))+1)
		for ; sent < due; sent++ {
			port := ports[0] + uint16(rand.IntN(int(ports[1]-ports[0])+1))
			pkt := synPacket(src, dst, uint16(1024+rand.IntN(60000)), port, rand.Uint32())
			if err := syscall.Sendto(fd, pkt, 0, to); err != nil {
				t.Fatalf("send SYN %d: %v", sent, err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// synPacket builds an IPv4 TCP SYN (the kernel fills the IP checksum and
// length of a raw IPPROTO_RAW socket's packets; the TCP checksum is ours).
func synPacket(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	s, d := src.As4(), dst.As4()
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4 // data offset
	tcp[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, syscall.IPPROTO_TCP, 0, 20)
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = syscall.IPPROTO_TCP
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	return append(ip, tcp...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// connectForward opens n connections, every interval, from src (in the
// internet namespace) to the port forward, each given timeout (less than
// the first SYN retransmission, 1 s: a dropped SYN is a failed
// connection), and returns how many got the server's greeting.
func connectForward(ns string, src, public netip.Addr, n int, interval, timeout time.Duration) (ok int, errs []string) {
	addr := net.JoinHostPort(public.String(), fmt.Sprint(forwardPort))
	for i := range n {
		if i > 0 {
			time.Sleep(interval)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		c, err := dialFrom(ctx, ns, src, "tcp4", addr)
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		c.SetDeadline(time.Now().Add(timeout))
		buf := make([]byte, 16)
		k, err := c.Read(buf)
		c.Close()
		if err != nil || strings.TrimSpace(string(buf[:k])) != "web" {
			errs = append(errs, fmt.Sprintf("no greeting: %v %q", err, buf[:k]))
			continue
		}
		ok++
	}
	return ok, errs
}

// TestFirewallSYNFloodKeepsPortForwardsAnswering: one internet host sends
// 2,000 SYN/s for 4 s, first to closed ports of the box, then to the port
// forward itself. During each flood, 20 connections to the forward from
// another internet host must succeed (at least 19), and during the flood
// of the box's ports, 20 from the flooding host itself too: the box's
// budget and the forwards' are apart, and each host has its own. (Before
// issue 12, one global 200/s budget let 7 of 20 through.)
func TestFirewallSYNFloodKeepsPortForwardsAnswering(t *testing.T) {
	fl, public := startForwardLab(t)
	inet := fl.lab.Namespace(lab.RoleInternet)
	if ok, errs := connectForward(inet, visitorAddr, public, 3, 50*time.Millisecond, 900*time.Millisecond); ok != 3 {
		t.Fatalf("the port forward does not answer before any flood: %d of 3 (%v)", ok, errs)
	}
	const rate, length = 2000, 4 * time.Second
	for _, phase := range []struct {
		name   string
		ports  [2]uint16
		from   []netip.Addr
		ctr    string
		budget float64 // per-source rate of the meter the flood meets
	}{
		{"closed box ports", [2]uint16{1000, 1999}, []netip.Addr{visitorAddr, flooderAddr}, "syn-flood", 20},
		{"the port forward", [2]uint16{forwardPort, forwardPort}, []netip.Addr{visitorAddr}, "syn-flood-fwd", 100},
	} {
		t.Run(phase.name, func(t *testing.T) {
			before := counters(t, fl.firewallShow(t))
			var wg sync.WaitGroup
			var sent int
			var took time.Duration
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				sent = synFlood(t, inet, flooderAddr, public, phase.ports, rate, length)
				took = time.Since(start)
			}()
			time.Sleep(300 * time.Millisecond) // the flood is on
			results := make([]int, len(phase.from))
			details := make([][]string, len(phase.from))
			var cw sync.WaitGroup
			for i, src := range phase.from {
				cw.Add(1)
				go func() {
					defer cw.Done()
					results[i], details[i] = connectForward(inet, src, public, 20, 150*time.Millisecond, 900*time.Millisecond)
				}()
			}
			cw.Wait()
			wg.Wait()
			after := counters(t, fl.firewallShow(t))
			dropped := after[phase.ctr] - before[phase.ctr]
			t.Logf("flood of %s: %d SYNs in %s (%.0f/s) from %s; %s dropped %d", phase.name, sent, took.Round(time.Millisecond),
				float64(sent)/took.Seconds(), flooderAddr, phase.ctr, dropped)
			for i, src := range phase.from {
				t.Logf("connections to the forward from %s during the flood: %d/20 %v", src, results[i], details[i])
				if results[i] < 19 {
					t.Errorf("from %s: %d of 20 connections to the port forward during the flood, want at least 19: %v", src, results[i], details[i])
				}
			}
			// The flooder's own meter let at most its budget through.
			if maxPassed := phase.budget*took.Seconds() + 2*phase.budget + 40; float64(sent)-float64(dropped) > maxPassed {
				t.Errorf("%s dropped %d of %d SYNs: more than %.0f passed", phase.ctr, dropped, sent, maxPassed)
			}
		})
	}
}

// TestFirewallPingLimitHoldsForSessionsUnderWay: one client pings the box
// 200 times at 5 ms intervals with one identifier (a single ping session,
// which conntrack sees as established after the first request): the
// per-source limit (10/s, burst 20) answers about 30, not 200.
func TestFirewallPingLimitHoldsForSessionsUnderWay(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	ns := fl.lab.Namespace(lab.RoleClient("peda"))
	box := fl.zone(t, "peda").Address
	var pc net.PacketConn
	if err := lab.RunInNamespace(ns, func() error {
		var err error
		pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	id := os.Getpid() & 0xffff
	replies := map[int]bool{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			pc.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || from.String() != box.String() {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				mu.Lock()
				replies[e.Seq] = true
				mu.Unlock()
			}
		}
	}()
	before := counters(t, fl.firewallShow(t))["ping-flood"]
	const n = 200
	start := time.Now()
	for seq := 1; seq <= n; seq++ {
		b, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("passerelle")}}).Marshal(nil)
		if _, err := pc.WriteTo(b, &net.IPAddr{IP: box.AsSlice()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	<-done
	got := len(replies)
	dropped := counters(t, fl.firewallShow(t))["ping-flood"] - before
	t.Logf("%d echo requests in %s (one session): %d replies, ping-flood dropped %d", n, took.Round(time.Millisecond), got, dropped)
	if maxOK := int(20 + 10*took.Seconds() + 3); got > maxOK || got < 15 {
		t.Errorf("%d of %d echo requests answered in %s; want between 15 and %d (burst 20, then 10/s)", got, n, took, maxOK)
	}
	if int(dropped)+got < n-5 {
		t.Errorf("ping-flood counted %d drops, with %d replies of %d requests", dropped, got, n)
	}
}

// publicResolverServer answers every DNS query with one A record, on the
// given UDP and TCP addresses of a namespace.
func publicResolverServer(t *testing.T, ns string, udp, tcp []string) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, 123)})
		}
		w.WriteMsg(m)
	})
	for _, a := range udp {
		pc, err := lab.ListenPacket(ns, "udp4", a)
		if err != nil {
			t.Fatal(err)
		}
		s := &dns.Server{PacketConn: pc, Handler: h}
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
	for _, a := range tcp {
		ln, err := lab.Listen(ns, "tcp4", a)
		if err != nil {
			t.Fatal(err)
		}
		s := &dns.Server{Listener: ln, Handler: h}
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
}

// TestFirewallRefusesPublicResolversOnOtherPorts: public resolvers also
// answer on 443, 5353 and more. A DNS server in the lab's internet on
// 8.8.8.8:443 (UDP and TCP) and 1.1.1.1:5353 (UDP) answers the
// administrative zone (its profile does not protect minors) but not the
// pupils' and guests' zones; their plain DNS to 8.8.8.8:53 is still
// answered by the box.
func TestFirewallRefusesPublicResolversOnOtherPorts(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	inet := fl.lab.Namespace(lab.RoleInternet)
	for _, a := range []string{"8.8.8.8/32", "1.1.1.1/32"} {
		ipCmd(t, "-n", inet, "addr", "add", a, "dev", "lo")
	}
	publicResolverServer(t, inet, []string{"8.8.8.8:443", "1.1.1.1:5353"}, []string{"8.8.8.8:443"})
	const name = "probe.example."
	type try struct{ network, server string }
	tries := []try{{"udp", "8.8.8.8:443"}, {"tcp", "8.8.8.8:443"}, {"udp", "1.1.1.1:5353"}}
	before := counters(t, fl.firewallShow(t))["resolver-blocked"]
	for _, tr := range tries {
		m, err := dnsQuery(t, fl.lab.Namespace(lab.RoleClient("admin")), tr.server, name, dns.TypeA, tr.network)
		if err != nil || len(m.Answer) != 1 || !strings.Contains(m.Answer[0].String(), "192.0.2.123") {
			t.Errorf("admin (no minors): DNS over %s to %s: %v %v; want the server's answer", tr.network, tr.server, m, err)
		}
	}
	refused := 0
	for _, zone := range []string{"peda", "guest"} {
		ns := fl.lab.Namespace(lab.RoleClient(zone))
		for _, tr := range tries {
			m, err := dnsQuery(t, ns, tr.server, name, dns.TypeA, tr.network)
			if err == nil {
				t.Errorf("%s (minors): DNS over %s to %s answered: %v", zone, tr.network, tr.server, m.Answer)
				continue
			}
			refused++
			t.Logf("%s: DNS over %s to %s failed as it must: %v", zone, tr.network, tr.server, err)
		}
		// Plain DNS to the same resolver still lands on the box (nothing
		// listens on 8.8.8.8:53 in the lab).
		m, err := dnsQuery(t, ns, "8.8.8.8:53", name, dns.TypeA, "udp")
		if err != nil {
			t.Errorf("%s: plain DNS to 8.8.8.8:53 got no answer from the box: %v", zone, err)
		} else if len(m.Answer) == 1 && strings.Contains(m.Answer[0].String(), "192.0.2.123") {
			t.Errorf("%s: plain DNS to 8.8.8.8:53 reached the outside server", zone)
		}
	}
	if n := counters(t, fl.firewallShow(t))["resolver-blocked"] - before; n < uint64(refused) {
		t.Errorf("resolver-blocked counted %d packets, want at least %d", n, refused)
	}
}
