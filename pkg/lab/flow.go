package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// EchoPort is the UDP port of the internet server's "who am I" echo: it
// answers each datagram with its first 4 bytes followed by the IPv4
// source address it saw, so a client learns which uplink (which NAT
// address) its packets left by.
const EchoPort = 7777

// echoAnswer is the echo's reply: the first 4 bytes of the query and the
// IPv4 source address it came from.
func echoAnswer(q []byte, from net.Addr) ([]byte, bool) {
	ua, ok := from.(*net.UDPAddr)
	if !ok || ua.IP.To4() == nil {
		return nil, false
	}
	return append(append(make([]byte, 0, 8), q[:min(len(q), 4)]...), ua.IP.To4()...), true
}

// startUDP serves a one-datagram-in, one-datagram-out protocol on UDP
// addr inside namespace nsName (the NTP reference, the echo); closing the
// socket at stop ends it.
func (s *servers) startUDP(nsName, addr, name string, answer func(q []byte, from net.Addr) ([]byte, bool)) error {
	pc, err := ListenPacket(nsName, "udp4", addr)
	if err != nil {
		return fmt.Errorf("%s server: %w", name, err)
	}
	s.packets = append(s.packets, pc)
	logger := s.logger.With("server", name, "namespace", nsName)
	s.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					logger.Warn("lab server stopped", "err", err)
				}
				return
			}
			if out, ok := answer(buf[:n], from); ok {
				_, _ = pc.WriteTo(out, from)
			}
		}
	})
	return nil
}

// Reply is one answer of the echo to a Flow.
type Reply struct {
	At  time.Time
	Seq uint32
	Src netip.Addr // the flow's source address as the server saw it
}

// Flow sends one UDP datagram every interval on a single socket (one
// conntrack entry, like a call or a game) from a namespace to the echo,
// and records every answer: the outage a fault causes is the longest gap
// between answers.
type Flow struct {
	conn net.Conn
	done chan struct{}
	wg   sync.WaitGroup
	sent atomic.Uint32 // sequence number of the last datagram sent

	mu      sync.Mutex
	replies []Reply
}

// StartFlow starts a flow from namespace nsName to the echo at server.
func StartFlow(nsName string, server netip.Addr, interval time.Duration) (*Flow, error) {
	conn, err := DialContext(context.Background(), nsName, "udp4", netip.AddrPortFrom(server, EchoPort).String())
	if err != nil {
		return nil, fmt.Errorf("flow from %s: %w", nsName, err)
	}
	f := &Flow{conn: conn, done: make(chan struct{})}
	f.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-f.done:
				return
			case <-tick.C:
			}
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], f.sent.Load()+1)
			_, _ = conn.Write(b[:]) // errors (unreachable) are part of an outage
			f.sent.Add(1)
		}
	})
	f.wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				select {
				case <-f.done:
					return
				default:
					continue // ICMP errors during an outage surface here
				}
			}
			if n != 8 {
				continue
			}
			src, _ := netip.AddrFromSlice(buf[4:8])
			r := Reply{At: time.Now(), Seq: binary.BigEndian.Uint32(buf[:4]), Src: src}
			f.mu.Lock()
			f.replies = append(f.replies, r)
			f.mu.Unlock()
		}
	})
	return f, nil
}

// Stop ends the flow; it may be called more than once.
func (f *Flow) Stop() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	f.conn.Close()
	f.wg.Wait()
}

// Sent is the sequence number of the last datagram sent; the first is 1.
func (f *Flow) Sent() uint32 { return f.sent.Load() }

// Replies returns the answers so far, oldest first.
func (f *Flow) Replies() []Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Reply(nil), f.replies...)
}

// LongestGap is the longest time without an answer between from and to:
// the outage a client saw.
func (f *Flow) LongestGap(from, to time.Time) time.Duration {
	last := from
	var worst time.Duration
	for _, r := range f.Replies() {
		if r.At.Before(from) || r.At.After(to) {
			continue
		}
		worst = max(worst, r.At.Sub(last))
		last = r.At
	}
	return max(worst, to.Sub(last))
}
