package timesync

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// maxRootDistance is the largest root delay/2 + dispersion accepted from a
// server (RFC 5905's MAXDIST): beyond it the server's own time is too
// uncertain to be worth having.
const maxRootDistance = 1500 * time.Millisecond

// maxDelay bounds the round trip of a usable sample; a school uplink that
// slow gives worse time than the box's own oscillator.
const maxDelay = 3 * time.Second

// sample is one measurement against one server.
type sample struct {
	server    netip.Addr
	offset    time.Duration // server clock minus ours
	delay     time.Duration // round trip, less the server's processing
	stratum   uint8
	leap      uint8
	refID     [4]byte
	rootDelay time.Duration
	rootDisp  time.Duration
}

// DialFunc opens a datagram connection to a server (through the box's
// routing, so through the active uplink).
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// query asks one server for the time, with a random transmit timestamp
// (the reply must echo it, which defeats off-path spoofing) and measures
// offset and delay from the local clock now.
func query(ctx context.Context, dial DialFunc, server netip.AddrPort, now func() time.Time, timeout time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, "udp4", server.String())
	if err != nil {
		return sample{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return sample{}, err
	}
	req := Packet{Version: 4, Mode: ModeClient, Transmit: Timestamp(binary.BigEndian.Uint64(nonce[:]))}
	t1 := now()
	if _, err := conn.Write(req.Append(nil)); err != nil {
		return sample{}, err
	}
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ne := net.Error(nil); ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
				return sample{}, fmt.Errorf("no answer within %s", timeout)
			}
			return sample{}, err
		}
		t4 := now()
		resp, err := ParsePacket(buf[:n])
		if err != nil || resp.Origin != req.Transmit {
			continue // not an answer to this query: keep waiting
		}
		s, err := measure(resp, t1, t4)
		s.server = server.Addr()
		return s, err
	}
}

var errKissOfDeath = errors.New("server sent a kiss-o'-death: stop asking")

// measure validates a server's answer to a query sent at t1 and received
// at t4 (local clock), and computes offset and delay (RFC 5905 section 8).
func measure(p Packet, t1, t4 time.Time) (sample, error) {
	switch {
	case p.Mode != ModeServer:
		return sample{}, fmt.Errorf("mode %d, want a server's answer", p.Mode)
	case p.Version < 1 || p.Version > 4:
		return sample{}, fmt.Errorf("version %d", p.Version)
	case p.Stratum == 0:
		return sample{}, fmt.Errorf("%w (%q)", errKissOfDeath, p.RefID[:])
	case p.Leap == LeapUnsynchronized || p.Stratum >= StratumUnsynchronized:
		return sample{}, errors.New("server is not synchronised")
	case p.Transmit == 0 || p.Receive == 0 || p.RefTime == 0:
		return sample{}, errors.New("server left timestamps empty")
	}
	t2, t3 := p.Receive.Time(t1), p.Transmit.Time(t1)
	if t3.Before(t2) {
		return sample{}, errors.New("server answered before it received the query")
	}
	s := sample{
		stratum:   p.Stratum,
		leap:      p.Leap,
		refID:     p.RefID,
		rootDelay: shortDuration(p.RootDelay),
		rootDisp:  shortDuration(p.RootDisp),
	}
	// t2-t1 and t3-t4 compare clocks; t4-t1 uses the monotonic reading.
	s.offset = (t2.Sub(t1) + t3.Sub(t4)) / 2
	s.delay = t4.Sub(t1) - t3.Sub(t2)
	if s.delay < 0 {
		s.delay = 0 // the server's processing measured longer than our round trip: clock granularity
	}
	if s.delay > maxDelay {
		return sample{}, fmt.Errorf("round trip %s too long", s.delay)
	}
	if d := s.rootDelay/2 + s.rootDisp; d > maxRootDistance {
		return sample{}, fmt.Errorf("root distance %s too large", d)
	}
	return s, nil
}
