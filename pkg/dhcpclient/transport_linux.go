package dhcpclient

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"passerelle/pkg/netmark"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// linuxTransport receives on a packet socket, which works before the
// interface has an address, and filtered in the kernel to UDP port 68 so
// the uplink's traffic is not copied to us. Broadcasts go out on the same
// socket. Unicasts to the server (renewal, release) go through an ordinary
// UDP socket bound to our leased address, so the kernel resolves the
// server's hardware address and the source address is right.
type linuxTransport struct {
	ifname string
	mark   uint32
	msgs   chan Incoming
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	raw     net.PacketConn // replaced when the interface goes down or away
	uni     net.PacketConn // bound to uniFrom:68
	uniFrom netip.Addr
	closed  bool
}

func openInterface(ifname string, mark uint32) (Transport, net.HardwareAddr, error) {
	raw, hw, err := openRaw(ifname)
	if err != nil {
		return nil, nil, err
	}
	t := &linuxTransport{
		ifname: ifname,
		mark:   mark,
		raw:    raw,
		msgs:   make(chan Incoming, 16),
		done:   make(chan struct{}),
	}
	t.wg.Go(t.readRaw)
	return t, hw, nil
}

func openRaw(ifname string) (net.PacketConn, net.HardwareAddr, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	if len(ifc.HardwareAddr) != 6 {
		return nil, nil, fmt.Errorf("interface %s has no Ethernet address", ifname)
	}
	filter, err := bpf.Assemble(dhcpClientFilter)
	if err != nil {
		return nil, nil, fmt.Errorf("dhcp socket filter: %w", err)
	}
	pc, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, nil, fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	return nclient4.NewBroadcastUDPConn(pc, &net.UDPAddr{Port: dhcpv4.ClientPort}), ifc.HardwareAddr, nil
}

// readRaw reads the packet socket. The kernel reports ENETDOWN on it when
// the interface goes down, and unbinds it when the interface goes away (a
// USB modem unplugged): it is then opened again, by name, until it works.
func (t *linuxTransport) readRaw() {
	for {
		t.mu.Lock()
		raw := t.raw
		t.mu.Unlock()
		t.read(raw)
		for {
			select {
			case <-t.done:
				return
			case <-time.After(reopenDelay):
			}
			nraw, _, err := openRaw(t.ifname)
			if err != nil {
				continue
			}
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				nraw.Close()
				return
			}
			t.raw.Close()
			t.raw = nraw
			t.mu.Unlock()
			break
		}
	}
}

// dhcpClientFilter accepts unfragmented IPv4 UDP datagrams to port 68. The
// socket is SOCK_DGRAM, so data starts at the IP header.
var dhcpClientFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1}, // IP protocol
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 5},
	bpf.LoadAbsolute{Off: 6, Size: 2},                           // flags and fragment offset
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 3}, // not the first fragment
	bpf.LoadMemShift{Off: 0},                                    // X = IP header length
	bpf.LoadIndirect{Off: 2, Size: 2},                           // UDP destination port
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: dhcpv4.ClientPort, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
}

func (t *linuxTransport) read(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		msg, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue // not DHCP, or damaged: not worth a log line per packet
		}
		var src netip.Addr
		if u, ok := from.(*net.UDPAddr); ok {
			src, _ = netip.AddrFromSlice(u.IP.To4())
		}
		select {
		case t.msgs <- Incoming{Msg: msg, From: src}:
		case <-t.done:
			return
		default: // the client is not keeping up: drop, as the network would
		}
	}
}

func (t *linuxTransport) Messages() <-chan Incoming { return t.msgs }

func (t *linuxTransport) Send(msg *dhcpv4.DHCPv4, to, from netip.Addr) error {
	if !to.IsValid() {
		t.mu.Lock()
		raw := t.raw
		t.mu.Unlock()
		_, err := raw.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort})
		return err
	}
	pc, err := t.unicastConn(from)
	if err != nil {
		return err
	}
	if _, err = pc.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: to.AsSlice(), Port: dhcpv4.ServerPort}); err != nil {
		// Bound to a device that may be gone: a fresh socket next time.
		t.mu.Lock()
		if t.uni == pc {
			t.uni.Close()
			t.uni = nil
		}
		t.mu.Unlock()
	}
	return err
}

// unicastConn returns a UDP socket bound to from:68 on the interface,
// replacing the one bound to a previous address.
func (t *linuxTransport) unicastConn(from netip.Addr) (net.PacketConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	if t.uni != nil && t.uniFrom == from {
		return t.uni, nil
	}
	if t.uni != nil {
		t.uni.Close()
		t.uni = nil
	}
	lc := net.ListenConfig{Control: netmark.BindControl(t.ifname, t.mark)}
	pc, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(from, dhcpv4.ClientPort).String())
	if err != nil {
		return nil, fmt.Errorf("udp socket on %s: %w", t.ifname, err)
	}
	t.uni, t.uniFrom = pc, from
	// Replies also arrive on the packet socket; reading them here too
	// keeps the kernel from answering "port unreachable", and the state
	// machine ignores the duplicate.
	t.wg.Go(func() { t.read(pc) })
	return pc, nil
}

func (t *linuxTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	err := t.raw.Close()
	if t.uni != nil {
		t.uni.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	close(t.msgs)
	return err
}
