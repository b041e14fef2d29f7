// Package netdiag runs the technician's network diagnostics from the box:
// ping (ICMP echo) and traceroute (ICMP echo with a growing TTL, reading
// the routers' time-exceeded answers), each on a raw ICMP socket whose
// control the caller gives (pkg/netmark's BindControl pins it to one
// uplink). Results are handed to a callback as they come, so the status
// page streams them.
//
// It runs nothing external (no ping or traceroute binary): the socket is
// opened through the net package, and the messages are built and parsed
// with golang.org/x/net/icmp.
package netdiag

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Control is a socket control function (net.ListenConfig.Control): the
// caller's way to pin the diagnostic's socket to an uplink.
type Control func(network, address string, c syscall.RawConn) error

// Options shape one diagnostic.
type Options struct {
	Control Control       // nil: the box's routing decides
	Count   int           // ping: echoes sent; 0: 4
	MaxHops int           // traceroute: 0: 15
	Wait    time.Duration // how long one echo waits for its answer; 0: 1 s
	// Interval between pings; 0: 1 s.
	Interval time.Duration
}

func (o *Options) defaults() {
	if o.Count <= 0 {
		o.Count = 4
	}
	if o.MaxHops <= 0 {
		o.MaxHops = 15
	}
	if o.Wait <= 0 {
		o.Wait = time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
}

// Reply is one echo's outcome.
type Reply struct {
	Seq  int
	From netip.Addr    // invalid when nothing came back
	RTT  time.Duration // 0 when nothing came back
	TTL  int           // traceroute: the hop; ping: 0
	// Kind is "reply" (the target answered), "time-exceeded" (a router
	// on the way), "unreachable" (a router says the target cannot be
	// reached: Code says why) or "timeout".
	Kind string
	Code int
}

// Summary is a ping's totals.
type Summary struct {
	Sent, Received int
	Min, Avg, Max  time.Duration
}

// Loss is the share of echoes without an answer, 0 to 1.
func (s Summary) Loss() float64 {
	if s.Sent == 0 {
		return 0
	}
	return float64(s.Sent-s.Received) / float64(s.Sent)
}

var payload = []byte("passerelle diagnostic 0123456789")

// conn is one diagnostic's raw ICMP socket and identifier.
type conn struct {
	ip *net.IPConn
	pc *ipv4.PacketConn
	id int
}

func open(ctx context.Context, control Control) (*conn, error) {
	lc := net.ListenConfig{Control: control}
	c, err := lc.ListenPacket(ctx, "ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("icmp socket: %w", err)
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		c.Close()
		return nil, err
	}
	ipc := c.(*net.IPConn)
	return &conn{ip: ipc, pc: ipv4.NewPacketConn(ipc), id: int(binary.BigEndian.Uint16(b[:]))}, nil
}

func (c *conn) close() error { return c.ip.Close() }

// send sends echo seq to target, with ttl when it is not 0.
func (c *conn) send(target netip.Addr, seq, ttl int) (time.Time, error) {
	if ttl > 0 {
		if err := c.pc.SetTTL(ttl); err != nil {
			return time.Time{}, fmt.Errorf("set TTL %d: %w", ttl, err)
		}
	}
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: c.id, Seq: seq, Data: payload}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if _, err := c.ip.WriteTo(b, &net.IPAddr{IP: target.AsSlice()}); err != nil {
		return at, fmt.Errorf("send to %s: %w", target, err)
	}
	return at, nil
}

// await reads until the answer to echo seq comes, or until deadline. The
// raw socket sees every ICMP message the box receives (on the pinned
// interface): only those about this echo count.
func (c *conn) await(ctx context.Context, target netip.Addr, seq int, sent, deadline time.Time) (Reply, error) {
	r := Reply{Seq: seq, Kind: "timeout"}
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := c.ip.SetReadDeadline(deadline); err != nil {
		return r, err
	}
	stop := context.AfterFunc(ctx, func() { c.ip.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ip.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return r, nil
			}
			return r, err
		}
		at := time.Now()
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP.To4())
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		switch body := msg.Body.(type) {
		case *icmp.Echo:
			if msg.Type != ipv4.ICMPTypeEchoReply || body.ID != c.id || body.Seq != seq || src != target {
				continue
			}
			r.Kind = "reply"
		case *icmp.TimeExceeded:
			if !c.quotes(body.Data, target, seq) {
				continue
			}
			r.Kind = "time-exceeded"
		case *icmp.DstUnreach:
			if !c.quotes(body.Data, target, seq) {
				continue
			}
			r.Kind, r.Code = "unreachable", msg.Code
		default:
			continue
		}
		r.From, r.RTT = src, at.Sub(sent)
		return r, nil
	}
}

// quotes says whether an ICMP error's quoted datagram (the original IPv4
// header and the first 8 bytes of its payload) is our echo seq to target.
func (c *conn) quotes(data []byte, target netip.Addr, seq int) bool {
	h, err := ipv4.ParseHeader(data)
	if err != nil || h.Protocol != 1 || len(data) < h.Len+8 {
		return false
	}
	dst, _ := netip.AddrFromSlice(h.Dst.To4())
	inner := data[h.Len:]
	return dst == target && inner[0] == byte(ipv4.ICMPTypeEcho) &&
		int(binary.BigEndian.Uint16(inner[4:6])) == c.id && int(binary.BigEndian.Uint16(inner[6:8])) == seq
}

// Ping sends o.Count echoes to target, one every o.Interval, and hands
// each outcome to each as it is known.
func Ping(ctx context.Context, target netip.Addr, o Options, each func(Reply)) (Summary, error) {
	o.defaults()
	var s Summary
	if !target.Is4() {
		return s, fmt.Errorf("%s: only IPv4 targets (the box routes IPv4)", target)
	}
	c, err := open(ctx, o.Control)
	if err != nil {
		return s, err
	}
	defer c.close()
	var total time.Duration
	for seq := 1; seq <= o.Count; seq++ {
		sent, err := c.send(target, seq, 0)
		if err != nil {
			return s, err
		}
		s.Sent++
		r, err := c.await(ctx, target, seq, sent, sent.Add(o.Wait))
		if err != nil {
			return s, err
		}
		if r.Kind == "reply" {
			s.Received++
			total += r.RTT
			if s.Min == 0 || r.RTT < s.Min {
				s.Min = r.RTT
			}
			s.Max = max(s.Max, r.RTT)
		}
		each(r)
		if seq == o.Count {
			break
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Until(sent.Add(o.Interval))):
		}
	}
	if s.Received > 0 {
		s.Avg = total / time.Duration(s.Received)
	}
	return s, nil
}

// Traceroute sends one echo per TTL from 1 up, and hands each hop to
// each as it answers (or times out), until the target answers, a router
// says it is unreachable, or o.MaxHops. It says whether the target was
// reached.
func Traceroute(ctx context.Context, target netip.Addr, o Options, each func(Reply)) (bool, error) {
	o.defaults()
	if !target.Is4() {
		return false, fmt.Errorf("%s: only IPv4 targets (the box routes IPv4)", target)
	}
	c, err := open(ctx, o.Control)
	if err != nil {
		return false, err
	}
	defer c.close()
	for ttl := 1; ttl <= o.MaxHops; ttl++ {
		sent, err := c.send(target, ttl, ttl)
		if err != nil {
			return false, err
		}
		r, err := c.await(ctx, target, ttl, sent, sent.Add(o.Wait))
		if err != nil {
			return false, err
		}
		r.TTL = ttl
		each(r)
		switch r.Kind {
		case "reply":
			return true, nil
		case "unreachable":
			return false, nil
		}
	}
	return false, nil
}
