package lab

import (
	"fmt"
	"net/netip"
)

// The plan is the complete, pure description of a lab run: which namespaces,
// links, addresses and routes to create. Computing it up front keeps the
// kernel-facing code a dumb executor and lets the address plan be unit
// tested without root.

// Lab-owned addresses (see the package documentation for the plan).
var (
	internetServerAddr = netip.MustParseAddr("203.0.113.10")
	academyServerAddr  = netip.MustParseAddr("203.0.113.100")
	transitBase        = netip.MustParseAddr("198.51.100.0")
	academyTransit     = netip.MustParsePrefix("198.51.100.252/30")
)

// Interface names inside lab namespaces. They never leave their namespace,
// so they only have to be unique per namespace.
const (
	ispBoxLink       = "box"  // ISP side of the box's uplink
	ispInternetLink  = "inet" // ISP side of the ISP <-> internet transit
	internetAcadLink = "acad" // internet side of the internet <-> academy transit
	academyLink      = "inet" // academy side of the internet <-> academy transit
	clientLink       = "eth0" // client side of the box's zone interface
	loopback         = "lo"
)

type nsPlan struct {
	role  string // public role, e.g. "isp:renater"
	name  string // namespace name, e.g. "pl1a2b3c-i-0"
	short string // role suffix of name, e.g. "i-0"
}

// vethPlan is one veth pair, end A in namespace aRole, end B in bRole.
type vethPlan struct {
	aRole, aLink string
	bRole, bLink string
}

type addrPlan struct {
	role, link string
	addr       netip.Prefix
}

// routePlan is a unicast route; a zero-length dst is the default route.
type routePlan struct {
	role, link string
	dst        netip.Prefix
	gw         netip.Addr
}

type plan struct {
	id         string
	spec       Spec // normalized
	namespaces []nsPlan
	veths      []vethPlan
	addrs      []addrPlan
	routes     []routePlan
	forwarding []string // roles that must route between their interfaces
}

// newPlan computes the plan of run id for a normalized spec.
func newPlan(id string, spec Spec) (*plan, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("lab: invalid run ID %q", id)
	}
	p := &plan{id: id, spec: spec}
	addNS := func(role, short string) {
		p.namespaces = append(p.namespaces, nsPlan{role: role, name: nsName(id, short), short: short})
	}
	addNS(RoleBox, "box")
	addNS(RoleInternet, "inet")
	addNS(RoleAcademy, "acad")

	p.addrs = append(p.addrs,
		addrPlan{RoleInternet, loopback, netip.PrefixFrom(internetServerAddr, 32)},
		addrPlan{RoleAcademy, loopback, netip.PrefixFrom(academyServerAddr, 32)},
	)
	p.forwarding = append(p.forwarding, RoleInternet)

	// Internet <-> academy: the academy is a datacenter behind the internet.
	acadInet, acadSide := transitHost(academyTransit, 1), transitHost(academyTransit, 2)
	p.veths = append(p.veths, vethPlan{RoleInternet, internetAcadLink, RoleAcademy, academyLink})
	p.addrs = append(p.addrs,
		addrPlan{RoleInternet, internetAcadLink, acadInet},
		addrPlan{RoleAcademy, academyLink, acadSide},
	)
	p.routes = append(p.routes,
		routePlan{RoleInternet, internetAcadLink, netip.PrefixFrom(academyServerAddr, 32), acadSide.Addr()},
		routePlan{RoleAcademy, academyLink, netip.Prefix{}, acadInet.Addr()},
	)

	for n, u := range spec.Uplinks {
		role := RoleISP(u.Name)
		addNS(role, shortISP(n))
		transit := netip.PrefixFrom(offset(transitBase, uint32(4*n)), 30)
		ispSide, inetSide := transitHost(transit, 1), transitHost(transit, 2)
		inetLink := fmt.Sprintf("isp%d", n)

		p.veths = append(p.veths,
			vethPlan{RoleBox, u.Interface, role, ispBoxLink},
			vethPlan{role, ispInternetLink, RoleInternet, inetLink},
		)
		// The gateway gets the box prefix's length, which also gives the ISP
		// its connected route to the customer prefix.
		p.addrs = append(p.addrs,
			addrPlan{role, ispBoxLink, netip.PrefixFrom(u.Gateway, u.BoxAddr.Bits())},
			addrPlan{role, ispInternetLink, ispSide},
			addrPlan{RoleInternet, inetLink, inetSide},
		)
		p.routes = append(p.routes,
			routePlan{role, ispInternetLink, netip.Prefix{}, inetSide.Addr()},
			// No NAT anywhere: the internet routes the customer prefix back
			// through the ISP that owns it, as the real internet does.
			routePlan{RoleInternet, inetLink, u.BoxAddr.Masked(), ispSide.Addr()},
		)
		p.forwarding = append(p.forwarding, role)
	}

	for n, z := range spec.Zones {
		role := RoleClient(z.Name)
		addNS(role, shortClient(n))
		p.veths = append(p.veths, vethPlan{RoleBox, z.Interface, role, clientLink})
		if z.Unaddressed {
			continue
		}
		p.addrs = append(p.addrs, addrPlan{role, clientLink, z.Client})
		p.routes = append(p.routes, routePlan{role, clientLink, netip.Prefix{}, z.Gateway})
	}
	return p, nil
}

// nsByRole returns the namespace name of a role, or "".
func (p *plan) nsByRole(role string) string {
	for _, ns := range p.namespaces {
		if ns.role == role {
			return ns.name
		}
	}
	return ""
}

// roleMap returns role -> namespace name.
func (p *plan) roleMap() map[string]string {
	m := make(map[string]string, len(p.namespaces))
	for _, ns := range p.namespaces {
		m[ns.role] = ns.name
	}
	return m
}

// boxLinks lists the box interfaces the lab creates (and brings up).
func (p *plan) boxLinks() []string {
	var links []string
	for _, v := range p.veths {
		if v.aRole == RoleBox {
			links = append(links, v.aLink)
		}
	}
	return links
}

// transitHost returns host n of a transit prefix, with its length.
func transitHost(p netip.Prefix, n uint32) netip.Prefix {
	return netip.PrefixFrom(offset(p.Masked().Addr(), n), p.Bits())
}

// offset adds n to an IPv4 address.
func offset(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
