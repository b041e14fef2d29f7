package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
)

// RawDHCP sends DHCP requests from a zone's client namespace in raw
// Ethernet frames whose source is the request's own hardware address, as
// a starvation tool does (each request looks like a new device), and reads
// the server's replies. It is for tests of the box's DHCP defences.
type RawDHCP struct {
	conn *packet.Conn
	ifi  *net.Interface
}

const etherTypeIPv4 = 0x0800

// RawDHCP opens a raw DHCP client on the eth0 of a zone's client
// namespace.
func (l *Lab) RawDHCP(zone string) (*RawDHCP, error) {
	var c RawDHCP
	err := RunInNamespace(l.Namespace(RoleClient(zone)), func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, etherTypeIPv4, nil)
		if err != nil {
			return err
		}
		c.conn, c.ifi = conn, ifi
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raw DHCP client in %s: %w", zone, err)
	}
	return &c, nil
}

// Close closes the client.
func (c *RawDHCP) Close() error { return c.conn.Close() }

// RandomMAC is a random unicast, locally administered hardware address,
// as phones use.
func RandomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	rand.Read(m)
	m[0] = m[0]&^1 | 2
	return m
}

// Send broadcasts m from 0.0.0.0:68, in a frame from m's hardware address.
func (c *RawDHCP) Send(m *dhcpv4.DHCPv4) error {
	payload := m.ToBytes()
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], dhcpv4.ClientPort)
	binary.BigEndian.PutUint16(udp[2:], dhcpv4.ServerPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload) // checksum 0: none (allowed over IPv4)
	ip := make([]byte, 20, 20+len(udp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	ip[8], ip[9] = 64, 17 // TTL, UDP
	copy(ip[16:20], net.IPv4bcast.To4())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	frame := make([]byte, 0, 14+len(ip)+len(udp))
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	frame = append(frame, m.ClientHWAddr...)
	frame = binary.BigEndian.AppendUint16(frame, etherTypeIPv4)
	frame = append(append(frame, ip...), udp...)
	_, err := c.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	return err
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Recv returns the next DHCP reply (a message to port 68) until deadline.
func (c *RawDHCP) Recv(deadline time.Time) (*dhcpv4.DHCPv4, error) {
	c.conn.SetReadDeadline(deadline)
	buf := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		b := buf[:n]
		if len(b) < 14+20+8 || binary.BigEndian.Uint16(b[12:]) != etherTypeIPv4 {
			continue
		}
		ip := b[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		if binary.BigEndian.Uint16(udp[2:]) != dhcpv4.ClientPort {
			continue
		}
		m, err := dhcpv4.FromBytes(udp[8:])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		return m, nil
	}
}

// FloodResult counts what a flood got.
type FloodResult struct {
	Sent   int // DISCOVERs, one per new hardware address
	Offers int
	Acks   int
}

// Flood sends count DISCOVERs, each from a new random hardware address,
// every interval, and completes every exchange the server answers
// (REQUEST after OFFER), as a starvation tool binding addresses does.
func (c *RawDHCP) Flood(ctx context.Context, count int, interval time.Duration) (FloodResult, error) {
	var (
		mu  sync.Mutex
		res FloodResult
	)
	readCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for readCtx.Err() == nil {
			m, err := c.Recv(time.Now().Add(100 * time.Millisecond))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				done <- err
				return
			}
			switch m.MessageType() {
			case dhcpv4.MessageTypeOffer:
				mu.Lock()
				res.Offers++
				mu.Unlock()
				req, err := dhcpv4.NewRequestFromOffer(m)
				if err == nil {
					c.Send(req)
				}
			case dhcpv4.MessageTypeAck:
				mu.Lock()
				res.Acks++
				mu.Unlock()
			}
		}
		done <- nil
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var sendErr error
	for i := 0; i < count && ctx.Err() == nil; i++ {
		d, err := dhcpv4.NewDiscovery(RandomMAC())
		if err == nil {
			err = c.Send(d)
		}
		if err != nil {
			sendErr = err
			break
		}
		mu.Lock()
		res.Sent++
		mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	time.Sleep(500 * time.Millisecond) // the last replies
	stop()
	readErr := <-done
	mu.Lock()
	defer mu.Unlock()
	return res, errors.Join(sendErr, readErr)
}
