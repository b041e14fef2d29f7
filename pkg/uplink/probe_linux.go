package uplink

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"passerelle/pkg/config"
	"passerelle/pkg/netmark"
)

func (s *linuxSystem) newProber(l Link) (prober, error) {
	switch l.Probe.Kind {
	case config.ProbeDNS:
		return &dnsProber{ifname: l.Interface, mark: l.Mark}, nil
	case config.ProbeHTTP:
		return &httpProber{ifname: l.Interface, mark: l.Mark}, nil
	}
	return newICMPProber(l.Interface, l.Mark)
}

// icmpProber sends echo requests on a raw socket (the daemon runs as
// root; unprivileged ping sockets are off by default in new namespaces).
// One reader matches replies to waiting probes by identifier and
// sequence number.
type icmpProber struct {
	conn *net.IPConn
	id   uint16

	mu      sync.Mutex
	seq     uint16
	waiting map[uint16]icmpWaiter
}

type icmpWaiter struct {
	target netip.Addr
	reply  chan time.Time
}

var probePayload = []byte("passerelle uplink probe")

func newICMPProber(ifname string, mark uint32) (*icmpProber, error) {
	lc := net.ListenConfig{Control: netmark.BindControl(ifname, mark)}
	pc, err := lc.ListenPacket(context.Background(), "ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("icmp socket on %s: %w", ifname, err)
	}
	conn := pc.(*net.IPConn)
	// Only echo replies reach us: the kernel drops other ICMP types
	// (ICMP_FILTER: a bit set per type to drop).
	if rc, err := conn.SyscallConn(); err == nil {
		filter := ^uint32(1 << uint(ipv4.ICMPTypeEchoReply))
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_RAW, 1 /* ICMP_FILTER */, int(int32(filter)))
		})
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p := &icmpProber{conn: conn, id: binary.BigEndian.Uint16(b[:]), waiting: map[uint16]icmpWaiter{}}
	go p.read()
	return p, nil
}

func (p *icmpProber) read() {
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		at := time.Now()
		msg, err := icmp.ParseMessage(1, buf[:n]) // the IPv4 header is stripped by IPConn
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok || uint16(echo.ID) != p.id {
			continue
		}
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP.To4())
		p.mu.Lock()
		w, ok := p.waiting[uint16(echo.Seq)]
		p.mu.Unlock()
		if ok && w.target == src {
			select {
			case w.reply <- at:
			default:
			}
		}
	}
}

func (p *icmpProber) probe(ctx context.Context, target netip.Addr) (time.Duration, error) {
	w := icmpWaiter{target: target, reply: make(chan time.Time, 1)}
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.waiting[seq] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, seq)
		p.mu.Unlock()
	}()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(p.id), Seq: int(seq), Data: probePayload}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := p.conn.WriteTo(b, &net.IPAddr{IP: target.AsSlice()}); err != nil {
		return 0, err
	}
	select {
	case at := <-w.reply:
		return at.Sub(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *icmpProber) close() error { return p.conn.Close() }

// dialBound connects through one uplink (its interface and mark) and ties
// the connection's deadline to ctx; done closes it.
func dialBound(ctx context.Context, network string, to netip.AddrPort, ifname string, mark uint32) (net.Conn, func(), error) {
	d := net.Dialer{Control: netmark.BindControl(ifname, mark)}
	conn, err := d.DialContext(ctx, network, to.String())
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	return conn, func() { stop(); conn.Close() }, nil
}

// dnsProber asks the target for the root's NS records; any answer, even
// a refusal, proves the path works.
type dnsProber struct {
	ifname string
	mark   uint32
}

func (p *dnsProber) probe(ctx context.Context, target netip.Addr) (time.Duration, error) {
	conn, done, err := dialBound(ctx, "udp4", netip.AddrPortFrom(target, 53), p.ifname, p.mark)
	if err != nil {
		return 0, err
	}
	defer done()
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeNS)
	b, err := q.Pack()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := conn.Write(b); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && r.Id == q.Id && r.Response {
			return time.Since(start), nil
		}
	}
}

func (p *dnsProber) close() error { return nil }

// httpProber opens a connection to port 80 and sends a HEAD request; any
// HTTP response counts (captive portals and errors included: the link
// carries traffic). The time measured is connect plus first response.
type httpProber struct {
	ifname string
	mark   uint32
}

func (p *httpProber) probe(ctx context.Context, target netip.Addr) (time.Duration, error) {
	start := time.Now()
	conn, done, err := dialBound(ctx, "tcp4", netip.AddrPortFrom(target, 80), p.ifname, p.mark)
	if err != nil {
		return 0, err
	}
	defer done()
	if _, err := fmt.Fprintf(conn, "HEAD / HTTP/1.1\r\nHost: %s\r\nUser-Agent: passerelle-probe\r\nConnection: close\r\n\r\n", target); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	if !strings.HasPrefix(line, "HTTP/") {
		return 0, fmt.Errorf("not an HTTP response: %q", strings.TrimSpace(line))
	}
	return time.Since(start), nil
}

func (p *httpProber) close() error { return nil }

// checkDNS asks server for the root's SOA through the link (a small
// answer any resolver has cached); any answer, even a refusal, shows DNS
// passes.
func (s *linuxSystem) checkDNS(ctx context.Context, l Link, server netip.AddrPort) error {
	conn, done, err := dialBound(ctx, "udp4", server, l.Interface, l.Mark)
	if err != nil {
		return err
	}
	defer done()
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeSOA)
	b, err := q.Pack()
	if err != nil {
		return err
	}
	if _, err := conn.Write(b); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && r.Id == q.Id && r.Response {
			return nil
		}
	}
}
