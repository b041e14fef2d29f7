package dhcpd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/packet"
)

// arpWait is how long a probe round waits for ARP replies: hosts answer
// within milliseconds; a phone in Wi-Fi power save within a few hundred.
const arpWait = time.Second

const etherTypeARP = 0x0806

// arpProber probes addresses with ARP requests on the zone's interface,
// from the box's address in the zone (the target learns nothing it did not
// know). It opens a packet socket per round: rounds are rare, and the
// interface may come and go.
type arpProber struct {
	device string
	src    netip.Addr
}

func newARPProber(device string, src netip.Addr) prober {
	return arpProber{device: device, src: src}
}

func (p arpProber) Probe(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]bool, error) {
	ifi, err := net.InterfaceByName(p.device)
	if err != nil {
		return nil, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%s: no Ethernet address", p.device)
	}
	conn, err := packet.Listen(ifi, packet.Datagram, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("ARP socket on %s: %w", p.device, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a] = true
		if _, err := conn.WriteTo(arpRequest(ifi.HardwareAddr, p.src, a), bcast); err != nil {
			return nil, fmt.Errorf("ARP request on %s: %w", p.device, err)
		}
	}
	answered := map[netip.Addr]bool{}
	conn.SetReadDeadline(time.Now().Add(arpWait))
	buf := make([]byte, 128)
	for len(answered) < len(want) {
		n, _, err := conn.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return nil, err
		}
		if a, ok := arpReplyFrom(buf[:n]); ok && want[a] {
			answered[a] = true
		}
	}
	return answered, ctx.Err()
}

// arpRequest is an ARP request (RFC 826) for target from the box.
func arpRequest(hw net.HardwareAddr, src, target netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], hw)
	s, t := src.As4(), target.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

// arpReplyFrom returns the sender address of an ARP reply (or of a
// request: a host asking for an address shows it uses its own).
func arpReplyFrom(b []byte) (netip.Addr, bool) {
	if len(b) < 28 || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return netip.Addr{}, false
	}
	a := netip.AddrFrom4([4]byte(b[14:18]))
	return a, !a.IsUnspecified()
}
