// Package netif owns the box's interfaces as the config describes them:
// links up, MTU, zone bridges, addresses (but those of dhcp uplinks) and
// IPv4 forwarding. Default routes belong to the uplink manager
// (pkg/uplink). Planning is pure; applying is done through netlink in
// apply_linux.go.
package netif

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// RouteProtocol marked the default routes earlier versions of this package
// installed in the main table (rtm_protocol). Apply removes any left
// behind: default routing is the uplink manager's now.
const RouteProtocol = 123

// Plan is the desired interface state.
type Plan struct {
	Forwarding bool
	Links      []Link
}

// Link is one interface the box manages.
type Link struct {
	Name   string
	Role   string // what it is for, e.g. "uplink renater", "zone peda"
	Bridge bool   // created by the box to join a zone's interfaces
	Master string // bridge this interface belongs to
	MTU    int    // 0 keeps the driver's
	Addrs  []netip.Prefix
	// DHCP: the addresses are the DHCP client's (pkg/uplink), never
	// touched here.
	DHCP bool
	// Hotplug links may be absent at boot (USB modems); the others too,
	// but then it is a fault worth a warning.
}

var _ box.Plan = (*Plan)(nil)

// Compile plans the interfaces of a valid config.
func Compile(cfg *config.Config) (*Plan, error) {
	p := &Plan{Forwarding: true}
	for _, u := range cfg.Uplinks {
		l := Link{Name: u.Interface, Role: "uplink " + u.Name, MTU: u.MTU}
		if u.Addressing == config.AddressingStatic {
			l.Addrs = []netip.Prefix{u.Address}
		} else {
			l.DHCP = true
		}
		p.Links = append(p.Links, l)
	}
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		addr := netip.PrefixFrom(z.Address, z.Subnet.Bits())
		role := "zone " + z.Name
		// The zone's device is named in pkg/config, so that the firewall,
		// DHCP, DNS and time bind to the very link made here.
		dev := z.Device()
		if len(z.Interfaces) == 1 {
			p.Links = append(p.Links, Link{Name: dev, Role: role, Addrs: []netip.Prefix{addr}})
			continue
		}
		br := dev
		if len(br) > 15 {
			return nil, fmt.Errorf("zone %s: bridge name %s is longer than 15 characters", z.Name, br)
		}
		p.Links = append(p.Links, Link{Name: br, Role: role, Bridge: true, Addrs: []netip.Prefix{addr}})
		for _, ifc := range z.Interfaces {
			p.Links = append(p.Links, Link{Name: ifc, Role: role + " port", Master: br})
		}
	}
	return p, nil
}

// Link returns the planned link of that name.
func (p *Plan) Link(name string) (Link, bool) {
	i := slices.IndexFunc(p.Links, func(l Link) bool { return l.Name == name })
	if i < 0 {
		return Link{}, false
	}
	return p.Links[i], true
}

func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sysctl net.ipv4.ip_forward = %d\n", boolInt(p.Forwarding))
	for _, l := range p.Links {
		fmt.Fprintf(&b, "link %s (%s)", l.Name, l.Role)
		if l.Bridge {
			b.WriteString(" bridge")
		}
		if l.Master != "" {
			fmt.Fprintf(&b, " master %s", l.Master)
		}
		b.WriteString(" up")
		if l.MTU > 0 {
			fmt.Fprintf(&b, " mtu %d", l.MTU)
		}
		for _, a := range l.Addrs {
			fmt.Fprintf(&b, " addr %s", a)
		}
		if l.DHCP {
			b.WriteString(" addr dhcp")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
