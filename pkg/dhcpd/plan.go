// Package dhcpd is the DHCP server of the box's LAN zones: one server per
// zone with DHCP enabled, on github.com/insomniacslk/dhcp messages, with its
// own lease manager. Leases expire and are reused (a client gets its
// previous address back while it is free; expired leases are reclaimed
// before a pool is declared full), reservations from the config always win,
// and the leases of each zone are persisted atomically and reloaded at start.
//
// Planning is pure (plan.go); the lease manager and the packet handler are
// pure too, with an injected clock (leases.go, handler.go), so they are
// tested and fuzzed without sockets. listen_linux.go opens the per-zone
// sockets.
package dhcpd

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// DefaultLeaseDir is where leases are kept on the board: /perm survives
// reboots and firmware updates.
const DefaultLeaseDir = "/perm/dhcp"

// Plan is the DHCP service of every zone that has it enabled.
type Plan struct {
	LeaseDir string
	Zones    []ZonePlan
}

// ZonePlan is the DHCP service of one zone.
type ZonePlan struct {
	Name       string
	Device     string       // interface the zone's clients are on (a bridge for several ports)
	Server     netip.Addr   // the box's address in the zone: server identifier, router, DNS
	Subnet     netip.Prefix // masked
	RangeStart netip.Addr
	RangeEnd   netip.Addr
	LeaseTime  time.Duration
	Domain     string
	Router     netip.Addr
	DNS        []netip.Addr
	NTP        []netip.Addr // empty when the box does not serve NTP
	Reserved   []Reservation
}

// Reservation is a fixed address for one hardware address.
type Reservation struct {
	MAC  [6]byte
	Addr netip.Addr
	Name string
}

var _ box.Plan = (*Plan)(nil)

// compile plans DHCP for a valid config.
func compile(cfg *config.Config, leaseDir string) (*Plan, error) {
	p := &Plan{LeaseDir: leaseDir}
	for _, z := range cfg.Zones {
		d := z.DHCP
		if !d.Enabled {
			continue
		}
		if !z.Subnet.Addr().Is4() || !d.RangeStart.Is4() || !d.RangeEnd.Is4() || d.RangeEnd.Less(d.RangeStart) {
			return nil, fmt.Errorf("zone %s: no usable IPv4 range %s-%s", z.Name, d.RangeStart, d.RangeEnd)
		}
		zp := ZonePlan{
			Name:       z.Name,
			Device:     z.Device(),
			Server:     z.Address,
			Subnet:     z.Subnet.Masked(),
			RangeStart: d.RangeStart,
			RangeEnd:   d.RangeEnd,
			LeaseTime:  d.LeaseTime.D(),
			Domain:     d.Domain,
			Router:     z.Address,
			DNS:        []netip.Addr{z.Address},
		}
		// Guest zones get no NTP from the box (the firewall's policy too:
		// phones set their clocks from the internet).
		if cfg.ServesNTP(&z) {
			zp.NTP = []netip.Addr{z.Address}
		}
		for _, r := range d.Reservations {
			zp.Reserved = append(zp.Reserved, Reservation{MAC: r.MAC, Addr: r.Address, Name: r.Name})
		}
		p.Zones = append(p.Zones, zp)
	}
	return p, nil
}

// LeaseFile is the file holding a zone's leases.
func (p *Plan) LeaseFile(zone string) string {
	return filepath.Join(p.LeaseDir, zone+".json")
}

// Zone returns the plan of one zone.
func (p *Plan) Zone(name string) (ZonePlan, bool) {
	for _, z := range p.Zones {
		if z.Name == name {
			return z, true
		}
	}
	return ZonePlan{}, false
}

// PoolSize is the number of addresses handed out dynamically: the range
// without the box's address and the reserved addresses inside it.
func (z *ZonePlan) PoolSize() int {
	n := int(u32(z.RangeEnd) - u32(z.RangeStart) + 1)
	if z.inRange(z.Server) {
		n--
	}
	for _, r := range z.Reserved {
		if z.inRange(r.Addr) && r.Addr != z.Server {
			n--
		}
	}
	return n
}

func (z *ZonePlan) inRange(a netip.Addr) bool {
	return a.Is4() && !a.Less(z.RangeStart) && !z.RangeEnd.Less(a)
}

func (p *Plan) String() string {
	var b strings.Builder
	for _, z := range p.Zones {
		fmt.Fprintf(&b, "zone %s dev %s server %s subnet %s pool %s-%s (%d addresses) lease %s leases %s\n",
			z.Name, z.Device, z.Server, z.Subnet, z.RangeStart, z.RangeEnd, z.PoolSize(), config.Duration(z.LeaseTime), p.LeaseFile(z.Name))
		fmt.Fprintf(&b, "  options router %s dns %s", z.Router, joinAddrs(z.DNS))
		if len(z.NTP) > 0 {
			fmt.Fprintf(&b, " ntp %s", joinAddrs(z.NTP))
		}
		fmt.Fprintf(&b, " domain %s\n", z.Domain)
		for _, r := range z.Reserved {
			fmt.Fprintf(&b, "  reserve %s %s", net.HardwareAddr(r.MAC[:]), r.Addr)
			if r.Name != "" {
				fmt.Fprintf(&b, " (%s)", r.Name)
			}
			b.WriteString("\n")
		}
	}
	if len(p.Zones) == 0 {
		b.WriteString("no zone serves DHCP\n")
	}
	return b.String()
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// u32 is an IPv4 address as a number, for range arithmetic.
func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrFrom(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
