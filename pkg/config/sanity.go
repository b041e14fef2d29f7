package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"
	"unicode"
	"unicode/utf8"
)

// The checks of this file refuse configurations that parse and look
// plausible but cannot work, or would turn the box against its own
// network (issue 12): a resolver that is the box itself, zones in
// addresses that are not unicast LAN space, overlapping links, a port
// forward to the box, control characters that would end up in a DHCP
// packet or a file, lists longer than anything real.

// Ranges no zone may use: they are not ordinary unicast LAN space, or
// are used by the academy or the tunnel.
var (
	specialZoneRanges = []struct {
		prefix netip.Prefix
		what   string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0/8)"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127/8)"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254/16)"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224/4)"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240/4)"},
	}
	// sharedSpace is RFC 6598's shared address space: carrier-grade NAT
	// in front of the 4G backups, and the tunnel's addresses.
	sharedSpace      = netip.MustParsePrefix("100.64.0.0/10")
	limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// maxForwardPorts bounds a port forward's range. A voice system's RTP
// range is 10,000 ports; a forward of every port exposes the server whole,
// the box's own services' ports included.
const maxForwardPorts = 16384

func (v *validator) sanity() {
	c := v.c
	v.lengths(reflect.ValueOf(c).Elem(), "")
	v.controls(reflect.ValueOf(c).Elem(), "")
	v.linkAddresses()
	v.zoneRanges()
	v.resolvers()
	v.forwardTargets()
	v.dhcpSanity()
}

// lengths refuses lists longer than their max tag (shown in the schema
// and docs/configuration.md). Uplinks and zones have checks of their own.
func (v *validator) lengths(rv reflect.Value, path string) {
	switch rv.Kind() {
	case reflect.Struct:
		if rv.Addr().Type().Implements(textUnmarshalerType) {
			return
		}
		for _, f := range structFields(rv.Type()).list {
			fv := rv.Field(f.index)
			p := join(path, f.key)
			if f.max > 0 && fv.Len() > f.max && p != "uplinks" && p != "zones" {
				v.errf(p, "%d items, at most %d", fv.Len(), f.max)
				continue // and do not look at each of them
			}
			v.lengths(fv, p)
		}
	case reflect.Slice:
		for i := 0; i < rv.Len(); i++ {
			v.lengths(rv.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// controls refuses control characters (and invalid UTF-8) in every string
// of the document: they reach DHCP options, DNS answers, host names,
// file names and logs, where a newline starts a new line.
func (v *validator) controls(rv reflect.Value, path string) {
	switch rv.Kind() {
	case reflect.Struct:
		if rv.Addr().Type().Implements(textUnmarshalerType) {
			return
		}
		for _, f := range structFields(rv.Type()).list {
			v.controls(rv.Field(f.index), join(path, f.key))
		}
	case reflect.Slice:
		for i := 0; i < rv.Len(); i++ {
			v.controls(rv.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		s := rv.String()
		for i, r := range s {
			if r == utf8.RuneError {
				v.errf(path, "is not valid UTF-8 (byte %d)", i+1)
				return
			}
			if unicode.IsControl(r) {
				v.errf(path, "contains the control character %U at character %d: newlines, tabs and other control characters would reach packets, files and logs", r, utf8.RuneCountInString(s[:i])+1)
				return
			}
		}
	}
}

// hostAddr says whether a is a host address of p (neither its network
// nor its broadcast address; every address of a /31 or /32).
func hostAddr(p netip.Prefix, a netip.Addr) bool {
	if p.Bits() >= 31 {
		return true
	}
	first, last := hostRange(p.Masked())
	return !a.Less(first) && !last.Less(a)
}

// linkAddresses checks static uplinks: addresses and gateways that are
// host addresses, links that do not overlap each other.
func (v *validator) linkAddresses() {
	type link struct {
		path   string
		prefix netip.Prefix
	}
	var links []link
	for i, u := range v.c.Uplinks {
		p := fmt.Sprintf("uplinks[%d]", i)
		if u.Addressing != AddressingStatic || !u.Address.IsValid() || !u.Address.Addr().Is4() {
			continue
		}
		net := u.Address.Masked()
		if u.Address.Bits() < 31 {
			if _, last := hostRange(net); last.Next() == u.Address.Addr() {
				v.errf(p+".address", "%s is the broadcast address of %s: give the box's own address", u.Address.Addr(), net)
			}
			if u.Gateway.IsValid() && net.Contains(u.Gateway) && !hostAddr(net, u.Gateway) {
				v.errf(p+".gateway", "%s is the network or broadcast address of %s, not a router", u.Gateway, net)
			}
		}
		for _, o := range links {
			if o.prefix.Overlaps(net) {
				v.errf(p+".address", "%s overlaps %s (%s): each uplink needs a subnet of its own", net, o.prefix, o.path)
			}
		}
		links = append(links, link{p + ".address", net})
	}
}

// zoneRanges refuses zone subnets outside ordinary unicast LAN space, or
// inside the academy's prefixes or the shared address space.
func (v *validator) zoneRanges() {
	for i, z := range v.c.Zones {
		if !z.Subnet.IsValid() || !z.Subnet.Addr().Is4() {
			continue
		}
		p := fmt.Sprintf("zones[%d].subnet", i)
		for _, r := range specialZoneRanges {
			if r.prefix.Overlaps(z.Subnet) {
				v.errf(p, "%s is in the %s range: a zone needs private unicast addresses, e.g. 10.x.y.0/24", z.Subnet, r.what)
			}
		}
		if sharedSpace.Overlaps(z.Subnet) {
			v.errf(p, "%s overlaps 100.64.0.0/10, the shared address space of carrier-grade NAT (4G backups) and of the tunnel", z.Subnet)
		}
		for j, a := range v.c.Tunnel.AcademyPrefixes {
			if a.IsValid() && a.Overlaps(z.Subnet) {
				v.errf(p, "%s overlaps the academy prefix %s (tunnel.academy_prefixes[%d]): its addresses would be unreachable from the zone", z.Subnet, a, j)
			}
		}
	}
}

// ownAddress says whether a is one of the box's addresses, and which.
func (v *validator) ownAddress(a netip.Addr) (string, bool) {
	for i, z := range v.c.Zones {
		if z.Address.IsValid() && z.Address == a {
			return fmt.Sprintf("zones[%d].address", i), true
		}
	}
	for i, u := range v.c.Uplinks {
		if u.Address.IsValid() && u.Address.Addr() == a {
			return fmt.Sprintf("uplinks[%d].address", i), true
		}
	}
	return "", false
}

// resolverAddr checks a DNS server address the box forwards to.
func (v *validator) resolverAddr(path string, ap netip.AddrPort) {
	a := ap.Addr().Unmap()
	if !a.IsValid() {
		return // reported elsewhere
	}
	switch {
	case a.IsUnspecified():
		v.errf(path, "%s is the unspecified address, not a resolver", a)
	case a.IsLoopback():
		v.errf(path, "%s is a loopback address: the box itself serves DNS on port 53, and would forward to itself", a)
	case a == limitedBroadcast || a.IsMulticast():
		v.errf(path, "%s is a broadcast or multicast address, not a resolver", a)
	case a.IsLinkLocalUnicast():
		v.errf(path, "%s is a link-local address, not a resolver", a)
	default:
		if own, ok := v.ownAddress(a); ok {
			v.errf(path, "%s is the box's own address (%s): the box would forward queries to itself", a, own)
			break
		}
		for i, z := range v.c.Zones {
			if z.Subnet.IsValid() && z.Subnet.Addr().Is4() && z.Subnet.Contains(a) && !hostAddr(z.Subnet, a) {
				v.errf(path, "%s is the network or broadcast address of zone %s (zones[%d].subnet)", a, z.Name, i)
			}
		}
	}
	if ap.Port() == 0 {
		v.errf(path, "port 0: a resolver listens on a port from 1 to 65535, usually 53")
	}
}

func (v *validator) resolvers() {
	d := v.c.DNS
	for i, u := range d.Upstreams {
		v.resolverAddr(fmt.Sprintf("dns.upstreams[%d].address", i), u.Address)
	}
	for i, cf := range d.ConditionalForwards {
		for j, s := range cf.Servers {
			v.resolverAddr(fmt.Sprintf("dns.conditional_forwards[%d].servers[%d]", i, j), s)
		}
	}
}

// forwardTargets refuses port forwards to the box itself or to a zone's
// network or broadcast address, and forwards of (nearly) every port.
func (v *validator) forwardTargets() {
	for i, f := range v.c.Firewall.PortForwards {
		p := fmt.Sprintf("firewall.port_forwards[%d]", i)
		if f.ToAddress.IsValid() {
			if own, ok := v.ownAddress(f.ToAddress); ok {
				v.errf(p+".to_address", "%s is the box's own address (%s): a port forward goes to a server behind the box", f.ToAddress, own)
			} else if z := v.zoneOf(f.ToAddress); z != nil && !hostAddr(z.Subnet, f.ToAddress) {
				v.errf(p+".to_address", "%s is the network or broadcast address of zone %s", f.ToAddress, z.Name)
			}
		}
		if n := int(f.Port.Last) - int(f.Port.First) + 1; !f.Port.IsZero() && n > maxForwardPorts {
			v.errf(p+".port", "%s forwards %d ports, at most %d: forwarding every port exposes the server whole", f.Port, n, maxForwardPorts)
		}
	}
}

// dhcpSanity checks what each zone's DHCP server puts in its packets.
func (v *validator) dhcpSanity() {
	for i, z := range v.c.Zones {
		p := fmt.Sprintf("zones[%d].dhcp", i)
		// The derived default is checked through the fields it comes from.
		derived := z.Name + "." + v.c.Identity.Hostname + "." + v.c.DNS.LocalDomain
		if d := z.DHCP.Domain; d != "" && d != derived && !hasControl(d) && !validDomain(d) {
			v.errf(p+".domain", "%q is not a domain name (letters, digits, - and _ in labels separated by dots)", d)
		}
		for j, r := range z.DHCP.Reservations {
			rp := fmt.Sprintf("%s.reservations[%d].mac", p, j)
			switch {
			case r.MAC.IsZero():
				v.errf(rp, "00:00:00:00:00:00 is not a device's address")
			case r.MAC[0]&1 != 0:
				v.errf(rp, "%s is a multicast (or broadcast) address: no device sends from it", r.MAC)
			}
		}
	}
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// explicitZero reports the durations written as zero that a default
// would otherwise replace without a word: lease_time: 0 used to mean
// 12 h. It runs on the decoded document, before applyDerived.
func (d *decoder) explicitZero(c *Config) {
	for i, z := range c.Zones {
		path := fmt.Sprintf("zones[%d].dhcp.lease_time", i)
		if pos, set := d.pos[path]; set && z.DHCP.LeaseTime == 0 {
			d.add(pos, path, "0s is not a lease time (2m-30d); remove the key for the default, %s", fmtDur(defaultLease(z.Kind)))
		}
	}
}

func defaultLease(k ZoneKind) time.Duration {
	if k == KindGuest {
		return 2 * time.Hour
	}
	return 12 * time.Hour
}
