package lab

import (
	"errors"
	"fmt"
	"net/netip"
)

// Spec describes the lab to build; it is derived from a box config by the
// caller.
type Spec struct {
	Uplinks []UplinkSpec // e.g. renater on wan0, backup on wan1
	Zones   []ZoneSpec   // one client namespace per LAN zone
}

// UplinkSpec describes one WAN uplink of the box and the ISP behind it.
type UplinkSpec struct {
	Name      string       // "renater", "backup": one ISP namespace per uplink
	Interface string       // box-side interface name, e.g. "wan0"
	BoxAddr   netip.Prefix // address the box will put on Interface (e.g. 192.0.2.2/30); the lab does NOT configure the box side
	Gateway   netip.Addr   // ISP gateway address on the link (e.g. 192.0.2.1), configured by the lab in the ISP namespace
	DHCP      *DHCPSpec    // if set, the ISP serves BoxAddr by DHCP (see DHCPSpec)
}

// ZoneSpec describes one LAN zone of the box and its test client.
type ZoneSpec struct {
	Name      string       // zone name, e.g. "peda"
	Interface string       // box-side interface, e.g. "lan0"; created in the box namespace but NOT addressed
	Subnet    netip.Prefix // e.g. 10.10.0.0/24
	Gateway   netip.Addr   // the box's address in the zone (e.g. 10.10.0.1): the client's default route
	Client    netip.Prefix // client address, e.g. 10.10.0.100/24 (if zero, the 100th host of Subnet)
	// Unaddressed leaves the client's eth0 up but without address or
	// route, as a DHCP client finds it at boot (DHCP server tests).
	Unaddressed bool
}

// Limits keep namespace names short and transit /30s inside 198.51.100.0/24
// (the last /30 is the academy link).
const (
	maxUplinks = 16
	maxZones   = 100
)

// clientHostIndex is the host number of the default client address in a
// zone: far enough from .1 that it never collides with a gateway or with the
// low addresses a DHCP pool usually starts at.
const clientHostIndex = 100

// Reserved ranges: the lab's own transit and server addresses. Spec prefixes
// must not overlap them or routing inside the lab would be ambiguous.
var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// normalize validates the spec and returns a copy with defaults filled in.
// All problems are reported at once so a broken box config is fixed in one
// go.
func (s Spec) normalize() (Spec, error) {
	var errs []error
	out := Spec{
		Uplinks: append([]UplinkSpec(nil), s.Uplinks...),
		Zones:   append([]ZoneSpec(nil), s.Zones...),
	}
	if len(out.Uplinks) > maxUplinks {
		errs = append(errs, fmt.Errorf("%d uplinks, at most %d supported", len(out.Uplinks), maxUplinks))
	}
	if len(out.Zones) > maxZones {
		errs = append(errs, fmt.Errorf("%d zones, at most %d supported", len(out.Zones), maxZones))
	}

	ifaces := map[string]string{} // box interface -> owner, for duplicate detection
	claimIface := func(owner, name string) {
		if err := validIfName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", owner, err))
			return
		}
		if prev, dup := ifaces[name]; dup {
			errs = append(errs, fmt.Errorf("%s: interface %s already used by %s", owner, name, prev))
			return
		}
		ifaces[name] = owner
	}
	var routed []netip.Prefix // prefixes that must not overlap each other

	uplinkNames := map[string]bool{}
	for i, u := range out.Uplinks {
		owner := fmt.Sprintf("uplink %d (%s)", i, u.Name)
		if u.Name == "" {
			errs = append(errs, fmt.Errorf("uplink %d: empty name", i))
		} else if uplinkNames[u.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate uplink name", owner))
		}
		uplinkNames[u.Name] = true
		claimIface(owner, u.Interface)
		if err := checkLinkAddrs(u.BoxAddr, u.Gateway); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", owner, err))
			continue
		}
		routed = append(routed, u.BoxAddr.Masked())
	}

	zoneNames := map[string]bool{}
	for i, z := range out.Zones {
		owner := fmt.Sprintf("zone %d (%s)", i, z.Name)
		if z.Name == "" {
			errs = append(errs, fmt.Errorf("zone %d: empty name", i))
		} else if zoneNames[z.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate zone name", owner))
		}
		zoneNames[z.Name] = true
		claimIface(owner, z.Interface)
		if !z.Subnet.IsValid() || !z.Subnet.Addr().Is4() {
			errs = append(errs, fmt.Errorf("%s: subnet %v is not an IPv4 prefix", owner, z.Subnet))
			continue
		}
		z.Subnet = z.Subnet.Masked()
		if !z.Client.IsValid() {
			c, err := nthHost(z.Subnet, clientHostIndex)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: default client address: %w", owner, err))
				continue
			}
			z.Client = c
		}
		if err := checkLinkAddrs(z.Client, z.Gateway); err != nil {
			errs = append(errs, fmt.Errorf("%s: client/gateway: %w", owner, err))
			continue
		}
		if z.Client.Masked() != z.Subnet {
			errs = append(errs, fmt.Errorf("%s: client %v is not in subnet %v", owner, z.Client, z.Subnet))
			continue
		}
		out.Zones[i] = z
		routed = append(routed, z.Subnet)
	}

	for i, p := range routed {
		for _, r := range reservedPrefixes {
			if p.Overlaps(r) {
				errs = append(errs, fmt.Errorf("prefix %v overlaps lab-reserved %v", p, r))
			}
		}
		for _, q := range routed[:i] {
			if p.Overlaps(q) {
				errs = append(errs, fmt.Errorf("prefixes %v and %v overlap", q, p))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Spec{}, fmt.Errorf("lab: invalid spec: %w", err)
	}
	return out, nil
}

// checkLinkAddrs checks that local (with its prefix length) and gw are two
// distinct usable IPv4 hosts of the same on-link subnet, so that gw can serve
// as a next hop for local.
func checkLinkAddrs(local netip.Prefix, gw netip.Addr) error {
	switch {
	case !local.IsValid() || !local.Addr().Is4():
		return fmt.Errorf("address %v is not an IPv4 prefix", local)
	case !gw.Is4():
		return fmt.Errorf("gateway %v is not an IPv4 address", gw)
	case local.Bits() > 31:
		return fmt.Errorf("address %v: prefix too long to hold a gateway", local)
	case !local.Contains(gw):
		return fmt.Errorf("gateway %v is not in %v", gw, local.Masked())
	case gw == local.Addr():
		return fmt.Errorf("gateway %v equals the local address", gw)
	}
	if local.Bits() < 31 { // RFC 3021 /31s have no network/broadcast address
		network, bcast := local.Masked().Addr(), lastAddr(local)
		for _, a := range []netip.Addr{local.Addr(), gw} {
			if a == network || a == bcast {
				return fmt.Errorf("%v is the network or broadcast address of %v", a, local.Masked())
			}
		}
	}
	return nil
}

// nthHost returns host number n of an IPv4 subnet, with the subnet's length.
func nthHost(subnet netip.Prefix, n uint32) (netip.Prefix, error) {
	a := offset(subnet.Masked().Addr(), n)
	if !subnet.Contains(a) || a == lastAddr(subnet) {
		return netip.Prefix{}, fmt.Errorf("subnet %v has no host number %d", subnet, n)
	}
	return netip.PrefixFrom(a, subnet.Bits()), nil
}

// lastAddr returns the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= ^uint32(0) >> p.Bits()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
