package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"passerelle/board"
	"passerelle/pkg/ut1/catalogue"
)

var (
	uaiRE     = regexp.MustCompile(`^[0-9]{2}[0-9AB][0-9]{4}[A-Z]$`)
	identRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,11}$`)
	academyRE = regexp.MustCompile(`^[a-z][a-z-]{1,30}$`)
	ifnameRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	labelRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// DNS labels in the wild also carry underscores (_dmarc, SRV names).
	domainLabelRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)
)

// Names with a meaning of their own in forwardings and rules.
const (
	EndInternet = "internet" // the uplinks
	EndTunnel   = "tunnel"   // the academy overlay
	EndBox      = "box"      // the box itself (rules only)
)

// maxUplinks bounds the uplinks so each gets its own firewall mark bit range.
const maxUplinks = 8

// MaxZones bounds the LAN zones. A board has a handful of ports; zones on
// VLANs (one per building, floor or use) are what could grow, and 64 is
// several times what the largest lycée plans. The bound keeps the firewall
// table, the DHCP servers and the DNS listeners (one per zone) small, and
// the firewall's compile and apply time measured (docs/benchmarks.md).
const MaxZones = 64

// validator gathers every problem of a config; each has a field path.
type validator struct {
	errs
	c     *Config
	zones map[string]*Zone
}

func (v *validator) errf(path, format string, args ...any) {
	v.add(Pos{}, path, format, args...)
}

// Validate checks a config whose defaults are applied. It returns an
// ErrorList naming every problem (without file positions; Parse adds them).
func (c *Config) Validate() error {
	v := &validator{c: c, zones: map[string]*Zone{}}
	v.validate()
	if len(v.list) == 0 {
		return nil
	}
	return v.list
}

func (v *validator) validate() {
	c := v.c
	if c.Version != CurrentVersion {
		v.errf("version", "unsupported version %d: this firmware reads version %d", c.Version, CurrentVersion)
	}
	var brd *board.Board
	if c.Board != "" {
		if !slices.Contains(board.Names(), c.Board) {
			v.errf("board", "unknown board %q (known: %s)", c.Board, strings.Join(board.Names(), ", "))
		} else if b, err := board.Lookup(c.Board); err != nil {
			v.errf("board", "%v", err)
		} else {
			brd = b
		}
	}
	v.identity()
	ifaces := map[string]string{} // interface -> path of its first use
	useIface := func(path, name string) {
		if !ifnameRE.MatchString(name) || name == "." || name == ".." {
			v.errf(path, "%q is not a valid interface name (1-15 letters, digits, _ . -)", name)
			return
		}
		if first, dup := ifaces[name]; dup {
			v.errf(path, "interface %s is already used by %s", name, first)
			return
		}
		ifaces[name] = path
		if brd != nil && !brd.Has(name) {
			v.errf(path, "interface %s does not exist on board %s (it has %s)", name, brd.Name, strings.Join(brd.InterfaceNames(), ", "))
		}
	}
	v.uplinks(useIface)
	v.zonesCheck(useIface)
	v.firewall()
	v.dns()
	v.time()
	v.tunnel()
	v.telemetry()
	v.management()
	v.statusPage()
	v.sanity() // sanity.go
}

func (v *validator) identity() {
	id := v.c.Identity
	if err := CheckUAI(id.UAI); err != nil {
		v.errf("identity.uai", "%v", err)
	}
	if strings.TrimSpace(id.Name) == "" {
		v.errf("identity.name", "must not be empty")
	}
	if !academyRE.MatchString(id.Academy) {
		v.errf("identity.academy", "%q is not an academy name: expected lower-case letters and -, e.g. paris or aix-marseille", id.Academy)
	}
	if id.Hostname != "" && !labelRE.MatchString(id.Hostname) {
		v.errf("identity.hostname", "%q is not a host name: expected lower-case letters, digits and - (at most 63)", id.Hostname)
	}
}

// uaiLetters are the check letters of a UAI: the alphabet without I, O
// and Q, which read like 1, 0 and O.
const uaiLetters = "ABCDEFGHJKLMNPRSTUVWXYZ"

// CheckUAI checks a UAI (the national school code): seven digits, then the
// check letter of the seven-digit number modulo 23 (0 is A). A wrong
// letter is how a mistyped digit shows, and a box configured with another
// school's code would be pushed that school's configuration.
func CheckUAI(uai string) error {
	if !uaiRE.MatchString(uai) {
		return fmt.Errorf("%q is not a UAI: expected 7 digits and an upper-case letter, e.g. 0751234J", uai)
	}
	n, _ := strconv.Atoi(uai[:7])
	if want := uaiLetters[n%23]; uai[7] != want {
		return fmt.Errorf("%q is not a UAI: the check letter of %s is %c, not %c (is a digit or the letter mistyped?)", uai, uai[:7], want, uai[7])
	}
	return nil
}

func (v *validator) checkIdent(path, what, name string) {
	if !identRE.MatchString(name) {
		v.errf(path, "%q is not a valid %s name: expected a lower-case letter, then lower-case letters, digits or _ (at most 12)", name, what)
	}
}

func (v *validator) uplinks(useIface func(path, name string)) {
	c := v.c
	if len(c.Uplinks) == 0 {
		v.errf("uplinks", "at least one uplink is required")
	}
	if len(c.Uplinks) > maxUplinks {
		v.errf("uplinks", "at most %d uplinks are supported, got %d", maxUplinks, len(c.Uplinks))
	}
	names := map[string]int{}
	for i, u := range c.Uplinks {
		p := fmt.Sprintf("uplinks[%d]", i)
		v.checkIdent(p+".name", "uplink", u.Name)
		if j, dup := names[u.Name]; dup {
			v.errf(p+".name", "duplicate uplink name %q (also uplinks[%d])", u.Name, j)
		}
		names[u.Name] = i
		useIface(p+".interface", u.Interface)
		switch u.Addressing {
		case AddressingStatic:
			if !u.Address.IsValid() {
				v.errf(p+".address", "missing: a static uplink needs its address, e.g. 192.0.2.2/30")
			} else if !u.Address.Addr().Is4() {
				v.errf(p+".address", "%s is not IPv4", u.Address)
			} else if u.Address.Masked().Addr() == u.Address.Addr() && u.Address.Bits() < 31 {
				v.errf(p+".address", "%s is the network address: give the box's own address with its prefix length", u.Address)
			}
			if !u.Gateway.IsValid() {
				v.errf(p+".gateway", "missing: a static uplink needs its gateway")
			} else if u.Address.IsValid() && !u.Address.Contains(u.Gateway) {
				v.errf(p+".gateway", "%s is outside the link's subnet %s (from address %s)", u.Gateway, u.Address.Masked(), u.Address)
			} else if u.Gateway == u.Address.Addr() {
				v.errf(p+".gateway", "%s is the box's own address on this link, not its gateway", u.Gateway)
			}
			if u.LeaseFile != "" {
				v.errf(p+".lease_file", "a static uplink has no lease: remove lease_file or use addressing: dhcp")
			}
		case AddressingDHCP:
			if u.Address.IsValid() || u.Gateway.IsValid() {
				v.errf(p+".addressing", "a dhcp uplink takes no address or gateway: remove them or use addressing: static")
			}
			if !filepath.IsAbs(u.LeaseFile) {
				v.errf(p+".lease_file", "%q is not an absolute path", u.LeaseFile)
			}
		}
		if u.Priority < 1 || u.Priority > 100 {
			v.errf(p+".priority", "%d is out of range 1-100", u.Priority)
		}
		if u.Weight < 1 || u.Weight > 100 {
			v.errf(p+".weight", "%d is out of range 1-100", u.Weight)
		}
		if u.MTU != 0 && (u.MTU < 576 || u.MTU > 9000) {
			v.errf(p+".mtu", "%d is out of range 576-9000 (or 0 for the driver's)", u.MTU)
		}
		v.probe(p+".probe", u.Probe)
	}
}

func (v *validator) duration(path string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		v.errf(path, "%s is out of range %s-%s", d, fmtDur(lo), fmtDur(hi))
	}
}

// fmtDur prints whole hours and days the way the format reads them.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func (v *validator) intRange(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.errf(path, "%d is out of range %d-%d", n, lo, hi)
	}
}

func (v *validator) probe(p string, pr Probe) {
	if len(pr.Targets) == 0 {
		v.errf(p+".targets", "at least one probe target is required")
	}
	for i, t := range pr.Targets {
		if !t.Is4() {
			v.errf(fmt.Sprintf("%s.targets[%d]", p, i), "%s is not an IPv4 address", t)
		}
	}
	v.duration(p+".interval", pr.Interval, 50*time.Millisecond, time.Minute)
	v.duration(p+".timeout", pr.Timeout, 10*time.Millisecond, 10*time.Second)
	if len(pr.Targets) > 0 {
		v.intRange(p+".quorum", pr.Quorum, 1, len(pr.Targets))
	}
	v.intRange(p+".down_after", pr.DownAfter, 1, 100)
	v.intRange(p+".up_after", pr.UpAfter, 1, 1000)
	v.duration(p+".degraded_rtt", pr.DegradedRTT, time.Millisecond, 10*time.Second)
	v.intRange(p+".degraded_loss", pr.DegradedLoss, 1, 100)
	v.duration(p+".standby_interval", pr.StandbyInterval, max(pr.Interval.D(), 50*time.Millisecond), 10*time.Minute)
}

var reservedEnds = map[string]bool{EndInternet: true, EndTunnel: true, EndBox: true, "wan": true, "academy": true}

func (v *validator) zonesCheck(useIface func(path, name string)) {
	c := v.c
	if len(c.Zones) == 0 {
		v.errf("zones", "at least one zone is required")
	}
	if len(c.Zones) > MaxZones {
		v.errf("zones", "%d zones, at most %d (VLANs included)", len(c.Zones), MaxZones)
	}
	profiles := map[string]bool{}
	for _, p := range c.DNS.Profiles {
		profiles[p.Name] = true
	}
	type subnetUse struct {
		path   string
		prefix netip.Prefix
	}
	var subnets []subnetUse
	for i, u := range c.Uplinks {
		if u.Address.IsValid() {
			subnets = append(subnets, subnetUse{fmt.Sprintf("uplinks[%d].address", i), u.Address.Masked()})
		}
	}
	names := map[string]int{}
	macs := map[MAC]string{}
	for i := range c.Zones {
		z := &c.Zones[i]
		p := fmt.Sprintf("zones[%d]", i)
		v.checkIdent(p+".name", "zone", z.Name)
		if reservedEnds[z.Name] {
			v.errf(p+".name", "%q is reserved (it names the uplinks, the tunnel or the box in rules)", z.Name)
		}
		if j, dup := names[z.Name]; dup {
			v.errf(p+".name", "duplicate zone name %q (also zones[%d])", z.Name, j)
		} else if z.Name != "" {
			v.zones[z.Name] = z
		}
		names[z.Name] = i
		if len(z.Interfaces) == 0 {
			v.errf(p+".interfaces", "at least one interface is required")
		}
		for j, ifc := range z.Interfaces {
			useIface(fmt.Sprintf("%s.interfaces[%d]", p, j), ifc)
		}
		subnetOK := false
		switch {
		case !z.Subnet.IsValid():
			// missing: reported by the decoder
		case !z.Subnet.Addr().Is4():
			v.errf(p+".subnet", "%s is not IPv4", z.Subnet)
		case z.Subnet.Masked() != z.Subnet:
			v.errf(p+".subnet", "%s has host bits set: did you mean %s?", z.Subnet, z.Subnet.Masked())
		case z.Subnet.Bits() < 16 || z.Subnet.Bits() > 29:
			v.errf(p+".subnet", "prefix length /%d is out of range /16-/29", z.Subnet.Bits())
		default:
			subnetOK = true
			for _, s := range subnets {
				if s.prefix.Overlaps(z.Subnet) {
					v.errf(p+".subnet", "%s overlaps %s (%s)", z.Subnet, s.prefix, s.path)
				}
			}
			subnets = append(subnets, subnetUse{p + ".subnet", z.Subnet})
		}
		if subnetOK && z.Address.IsValid() {
			first, last := hostRange(z.Subnet)
			if !z.Subnet.Contains(z.Address) {
				v.errf(p+".address", "%s is outside the zone subnet %s", z.Address, z.Subnet)
			} else if z.Address.Less(first) || last.Less(z.Address) {
				v.errf(p+".address", "%s is the network or broadcast address of %s", z.Address, z.Subnet)
			}
		}
		switch {
		case z.DNSProfile != "" && !profiles[z.DNSProfile]:
			v.errf(p+".dns_profile", "no DNS profile named %q (dns.profiles has %s)", z.DNSProfile, listOrNone(profileNames(c)))
		case z.DNSProfile == "" && (z.Kind == KindPedagogical || z.Kind == KindGuest):
			v.errf(p+".dns_profile", "missing: a %s zone serves minors and needs a filtering profile", z.Kind)
		}
		if subnetOK {
			v.dhcp(p+".dhcp", z, macs)
		}
	}
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func profileNames(c *Config) []string {
	var out []string
	for _, p := range c.DNS.Profiles {
		out = append(out, p.Name)
	}
	return out
}

func (v *validator) dhcp(p string, z *Zone, macs map[MAC]string) {
	d := z.DHCP
	v.duration(p+".lease_time", d.LeaseTime, 2*time.Minute, 30*24*time.Hour)
	first, last := hostRange(z.Subnet)
	inHosts := func(a netip.Addr) bool { return !a.Less(first) && !last.Less(a) }
	notHost := func(path string, a netip.Addr) {
		if !a.IsValid() {
			v.errf(path, "missing: set both range_start and range_end")
		} else {
			v.errf(path, "%s is not a host address of %s", a, z.Subnet)
		}
	}
	if d.Enabled && !d.RangeStart.IsValid() && !d.RangeEnd.IsValid() {
		// applyDerived leaves subnets smaller than /28 without a range.
		v.errf(p, "a /%d subnet has no default DHCP range: set range_start and range_end, or enabled: false", z.Subnet.Bits())
	} else if d.Enabled {
		okStart := d.RangeStart.IsValid() && inHosts(d.RangeStart)
		okEnd := d.RangeEnd.IsValid() && inHosts(d.RangeEnd)
		if !okStart {
			notHost(p+".range_start", d.RangeStart)
		}
		if !okEnd {
			notHost(p+".range_end", d.RangeEnd)
		}
		if okStart && okEnd {
			if d.RangeEnd.Less(d.RangeStart) {
				v.errf(p+".range_end", "%s comes before range_start %s", d.RangeEnd, d.RangeStart)
			} else if z.Address.IsValid() && !z.Address.Less(d.RangeStart) && !d.RangeEnd.Less(z.Address) {
				v.errf(p+".range_start", "the range %s-%s contains the box's own address %s", d.RangeStart, d.RangeEnd, z.Address)
			}
		}
	}
	addrs := map[netip.Addr]bool{}
	for i, r := range d.Reservations {
		rp := fmt.Sprintf("%s.reservations[%d]", p, i)
		if !r.MAC.IsZero() {
			if first, dup := macs[r.MAC]; dup {
				v.errf(rp+".mac", "%s is already reserved at %s", r.MAC, first)
			}
			macs[r.MAC] = rp
		}
		if r.Address.IsValid() {
			switch {
			case !inHosts(r.Address):
				v.errf(rp+".address", "%s is not a host address of %s", r.Address, z.Subnet)
			case r.Address == z.Address:
				v.errf(rp+".address", "%s is the box's own address", r.Address)
			case addrs[r.Address]:
				v.errf(rp+".address", "%s is reserved twice in this zone", r.Address)
			}
			addrs[r.Address] = true
		}
	}
}

// end checks one end of a forwarding or rule.
func (v *validator) end(path, name string, allowed ...string) {
	if _, ok := v.zones[name]; ok {
		return
	}
	for _, a := range allowed {
		if name == a {
			return
		}
	}
	v.errf(path, "no zone named %q (expected a zone name or %s)", name, strings.Join(allowed, ", "))
}

func (v *validator) firewall() {
	fw := v.c.Firewall
	pairs := map[[2]string]int{}
	for i, f := range fw.Forwardings {
		p := fmt.Sprintf("firewall.forwardings[%d]", i)
		if f.From == EndInternet {
			v.errf(p+".from", "connections from the internet are opened with port_forwards, not forwardings")
		} else {
			v.end(p+".from", f.From, EndTunnel)
		}
		v.end(p+".to", f.To, EndInternet, EndTunnel)
		if f.From == f.To && f.From != "" {
			v.errf(p+".to", "a zone always reaches itself: from and to are both %q", f.From)
		}
		key := [2]string{f.From, f.To}
		if j, dup := pairs[key]; dup {
			v.errf(p, "duplicate forwarding %s -> %s (also firewall.forwardings[%d])", f.From, f.To, j)
		}
		pairs[key] = i
	}
	names := map[string]int{}
	for i, r := range fw.Rules {
		p := fmt.Sprintf("firewall.rules[%d]", i)
		if j, dup := names[r.Name]; dup {
			v.errf(p+".name", "duplicate rule name %q (also firewall.rules[%d])", r.Name, j)
		}
		names[r.Name] = i
		v.end(p+".from", r.From, EndInternet, EndTunnel)
		v.end(p+".to", r.To, EndInternet, EndTunnel, EndBox)
		if len(r.Ports) > 0 && r.Protocol != ProtoTCP && r.Protocol != ProtoUDP {
			v.errf(p+".ports", "ports need protocol tcp or udp, not %s", r.Protocol)
		}
		v.prefixes(p+".source", r.Source)
		v.prefixes(p+".destination", r.Destination)
	}
	uplinks := map[string]bool{}
	for _, u := range v.c.Uplinks {
		uplinks[u.Name] = true
	}
	type pub struct {
		uplink string
		proto  Protocol
		port   PortRange
		path   string
	}
	var pubs []pub
	names = map[string]int{}
	for i, f := range fw.PortForwards {
		p := fmt.Sprintf("firewall.port_forwards[%d]", i)
		if j, dup := names[f.Name]; dup {
			v.errf(p+".name", "duplicate port forward name %q (also firewall.port_forwards[%d])", f.Name, j)
		}
		names[f.Name] = i
		if f.Uplink != "" && !uplinks[f.Uplink] {
			v.errf(p+".uplink", "no uplink named %q", f.Uplink)
		}
		if f.Protocol != ProtoTCP && f.Protocol != ProtoUDP {
			v.errf(p+".protocol", "a port forward is tcp or udp, not %s", f.Protocol)
		}
		if f.ToAddress.IsValid() && v.zoneOf(f.ToAddress) == nil {
			v.errf(p+".to_address", "%s is in no zone subnet", f.ToAddress)
		}
		if f.ToPort < 0 || f.ToPort > 65535 {
			v.errf(p+".to_port", "%d is out of range 1-65535", f.ToPort)
		} else if f.ToPort != 0 && f.Port.First != f.Port.Last {
			v.errf(p+".to_port", "a port range (%s) is forwarded to the same ports: remove to_port", f.Port)
		}
		for _, o := range pubs {
			sameUplink := o.uplink == "" || f.Uplink == "" || o.uplink == f.Uplink
			if sameUplink && o.proto == f.Protocol && f.Port.First <= o.port.Last && o.port.First <= f.Port.Last {
				v.errf(p+".port", "%s/%s is already forwarded by %s", f.Protocol, f.Port, o.path)
			}
		}
		pubs = append(pubs, pub{f.Uplink, f.Protocol, f.Port, p})
	}
}

func (v *validator) zoneOf(a netip.Addr) *Zone {
	for _, z := range v.zones {
		if z.Subnet.IsValid() && z.Subnet.Contains(a) {
			return z
		}
	}
	return nil
}

func (v *validator) prefixes(path string, ps []netip.Prefix) {
	for i, p := range ps {
		switch {
		case !p.Addr().Is4():
			v.errf(fmt.Sprintf("%s[%d]", path, i), "%s is not IPv4", p)
		case p.Masked() != p:
			v.errf(fmt.Sprintf("%s[%d]", path, i), "%s has host bits set: did you mean %s?", p, p.Masked())
		}
	}
}

// validDomain accepts a DNS name in ASCII (IDN names in punycode).
func validDomain(s string) bool {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !domainLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func (v *validator) dns() {
	d := v.c.DNS
	uplinks := map[string]bool{}
	for _, u := range v.c.Uplinks {
		uplinks[u.Name] = true
	}
	for i, u := range d.Upstreams {
		p := fmt.Sprintf("dns.upstreams[%d]", i)
		if !u.Address.Addr().Is4() && !u.Address.Addr().Is6() {
			v.errf(p+".address", "missing address")
		}
		if u.Uplink != "" && !uplinks[u.Uplink] {
			v.errf(p+".uplink", "no uplink named %q", u.Uplink)
		}
	}
	for i, cf := range d.ConditionalForwards {
		p := fmt.Sprintf("dns.conditional_forwards[%d]", i)
		if !validDomain(cf.Domain) {
			v.errf(p+".domain", "%q is not a domain name", cf.Domain)
		}
		if len(cf.Servers) == 0 {
			v.errf(p+".servers", "at least one server is required")
		}
	}
	if d.Lists.Source != "" {
		// The checksum comes from the same server as the archive: only
		// TLS says both are the academy's (issue 12).
		if u, err := url.Parse(d.Lists.Source); err != nil || u.Scheme != "https" || u.Host == "" {
			v.errf("dns.lists.source", "%q is not an https URL: lists are only fetched over https", d.Lists.Source)
		}
	}
	if !filepath.IsAbs(d.Lists.Directory) {
		v.errf("dns.lists.directory", "%q is not an absolute path", d.Lists.Directory)
	}
	v.intRange("dns.lists.max_shrink", d.Lists.MaxShrink, 1, 100)
	names := map[string]int{}
	for i, pr := range d.Profiles {
		p := fmt.Sprintf("dns.profiles[%d]", i)
		v.checkIdent(p+".name", "profile", pr.Name)
		if j, dup := names[pr.Name]; dup {
			v.errf(p+".name", "duplicate profile name %q (also dns.profiles[%d])", pr.Name, j)
		}
		names[pr.Name] = i
		for j, cat := range pr.Categories {
			if _, ok := catalogue.Lookup(cat); !ok {
				v.errf(fmt.Sprintf("%s.categories[%d]", p, j), "unknown UT1 category %s", suggestCategory(cat))
			}
		}
		for _, list := range []struct {
			key     string
			domains []string
		}{{"allow", pr.Allow}, {"deny", pr.Deny}} {
			for j, dom := range list.domains {
				if !validDomain(dom) {
					v.errf(fmt.Sprintf("%s.%s[%d]", p, list.key, j), "%q is not a domain name (an entry covers its subdomains: write example.org, not *.example.org)", dom)
				}
			}
		}
	}
	v.intRange("dns.cache.size", d.Cache.Size, 0, 10_000_000)
	v.duration("dns.cache.max_ttl", d.Cache.MaxTTL, time.Second, 7*24*time.Hour)
	if d.Cache.MinTTL > d.Cache.MaxTTL || d.Cache.MinTTL < 0 {
		v.errf("dns.cache.min_ttl", "%s must be between 0s and max_ttl (%s)", d.Cache.MinTTL, d.Cache.MaxTTL)
	}
	v.duration("dns.privacy.retention", d.Privacy.Retention, time.Hour, 30*24*time.Hour)
	if !filepath.IsAbs(d.Privacy.Directory) {
		v.errf("dns.privacy.directory", "%q is not an absolute path", d.Privacy.Directory)
	}
	v.intRange("dns.rate_limit", d.RateLimit, 10, 100000)
	v.localDomain(d.LocalDomain)
}

// localDomain checks dns.local_domain: a domain name, outside the trees
// the DNS filter already answers otherwise (reverse zones, mDNS's local,
// localhost).
func (v *validator) localDomain(s string) {
	n := strings.TrimSuffix(strings.ToLower(s), ".")
	switch {
	case !validDomain(s):
		v.errf("dns.local_domain", "%q is not a domain name (the default, home.arpa, is reserved for local networks by RFC 8375)", s)
	case n == "arpa" || n == "in-addr.arpa" || n == "ip6.arpa" || strings.HasSuffix(n, ".in-addr.arpa") || strings.HasSuffix(n, ".ip6.arpa"),
		n == "local" || strings.HasSuffix(n, ".local"), n == "localhost" || strings.HasSuffix(n, ".localhost"):
		v.errf("dns.local_domain", "%q is reserved for another use (reverse lookups, mDNS or loopback): use home.arpa or a domain of your own", s)
	}
}

// suggestCategory names the catalogue's closest category to a misspelt
// one, or where the list is.
func suggestCategory(name string) string {
	if best := Closest(name, catalogue.Names()); best != "" {
		return fmt.Sprintf("%q (did you mean %q?)", name, best)
	}
	return fmt.Sprintf("%q (the UT1 categories are listed in docs/configuration.md)", name)
}

func (v *validator) url(path, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(path, "%q is not an http or https URL", s)
	}
}

func (v *validator) time() {
	t := v.c.Time
	if len(t.Servers) == 0 {
		v.errf("time.servers", "at least one NTP server is required")
	}
	for i, s := range t.Servers {
		if _, err := netip.ParseAddr(s); err != nil && !validDomain(s) {
			v.errf(fmt.Sprintf("time.servers[%d]", i), "%q is neither an address nor a host name", s)
		}
	}
}

func (v *validator) tunnel() {
	t := v.c.Tunnel
	if t.Enabled {
		if t.ControlURL == "" {
			v.errf("tunnel.control_url", "missing: an enabled tunnel needs the academy's control server URL")
		}
	}
	if t.ControlURL != "" {
		u, err := url.Parse(t.ControlURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.errf("tunnel.control_url", "%q is not an https URL", t.ControlURL)
		}
	}
	if !filepath.IsAbs(t.AuthKeyFile) {
		v.errf("tunnel.auth_key_file", "%q is not an absolute path", t.AuthKeyFile)
	}
	v.prefixes("tunnel.advertise_routes", t.AdvertiseRoutes)
	for i, r := range t.AdvertiseRoutes {
		found := false
		for _, z := range v.zones {
			if z.Subnet.IsValid() && z.Subnet.Bits() <= r.Bits() && z.Subnet.Contains(r.Addr()) {
				found = true
			}
		}
		if !found && r.Addr().Is4() {
			v.errf(fmt.Sprintf("tunnel.advertise_routes[%d]", i), "%s is not inside any zone subnet", r)
		}
	}
	v.prefixes("tunnel.academy_prefixes", t.AcademyPrefixes)
	v.tunnelDNS()
}

// tunnelDNS checks the academy's names: their resolvers must be reached
// through the tunnel (inside academy_prefixes), and a domain is forwarded
// once (tunnel or dns.conditional_forwards).
func (v *validator) tunnelDNS() {
	t := v.c.Tunnel
	seen := map[string]string{}
	for i, cf := range v.c.DNS.ConditionalForwards {
		seen[strings.TrimSuffix(strings.ToLower(cf.Domain), ".")] = fmt.Sprintf("dns.conditional_forwards[%d]", i)
	}
	domain := func(path, d string) {
		if !validDomain(d) {
			v.errf(path, "%q is not a domain name", d)
			return
		}
		k := strings.TrimSuffix(strings.ToLower(d), ".")
		if other, ok := seen[k]; ok {
			v.errf(path, "%s is already forwarded by %s", d, other)
		}
		seen[k] = path
	}
	for i, d := range t.AcademyDomains {
		domain(fmt.Sprintf("tunnel.academy_domains[%d]", i), d)
	}
	if len(t.AcademyDomains) > 0 && len(t.AcademyResolvers) == 0 {
		v.errf("tunnel.academy_resolvers", "missing: tunnel.academy_domains need the academy's resolvers")
	}
	for i, r := range t.AcademyResolvers {
		p := fmt.Sprintf("tunnel.academy_resolvers[%d]", i)
		v.resolverAddr(p, r)
		in := false
		for _, pr := range t.AcademyPrefixes {
			in = in || pr.Contains(r.Addr().Unmap())
		}
		if !in {
			v.errf(p, "%s is not inside tunnel.academy_prefixes: it would not be reached through the tunnel", r.Addr())
		}
	}
	if t.TailnetDomain != "" {
		domain("tunnel.tailnet_domain", t.TailnetDomain)
	}
}

func (v *validator) telemetry() {
	t := v.c.Telemetry
	if t.Enabled && t.RemoteWriteURL == "" {
		v.errf("telemetry.remote_write_url", "missing: enabled telemetry needs the academy's remote-write URL")
	}
	if t.RemoteWriteURL != "" {
		v.url("telemetry.remote_write_url", t.RemoteWriteURL)
	}
	v.duration("telemetry.interval", t.Interval, 10*time.Second, time.Hour)
	v.intRange("telemetry.buffer_kib", t.BufferKiB, 64, 65536)
	v.intRange("telemetry.metrics_port", t.MetricsPort, 1, 65535)
	if t.BasicAuthUser != "" && t.BasicAuthPasswordFile == "" {
		v.errf("telemetry.basic_auth_password_file", "missing: basic_auth_user needs a password file")
	}
	if t.BasicAuthUser != "" && t.BearerTokenFile != "" {
		v.errf("telemetry.bearer_token_file", "use either a bearer token or basic authentication, not both")
	}
	if t.Via == TelemetryViaTunnel && !v.c.Tunnel.Enabled {
		v.errf("telemetry.via", "tunnel: the tunnel is not enabled")
	}
	for i, z := range t.MetricsZones {
		if _, ok := v.zones[z]; !ok {
			v.errf(fmt.Sprintf("telemetry.metrics_zones[%d]", i), "no zone named %q", z)
		} else if v.zones[z].Kind == KindGuest {
			v.errf(fmt.Sprintf("telemetry.metrics_zones[%d]", i), "guest zone %q may not read the box's metrics", z)
		}
	}
}

func (v *validator) management() {
	m := v.c.Management
	names := map[string]int{}
	keys := map[PublicKey]int{}
	for i, k := range m.TrustedKeys {
		p := fmt.Sprintf("management.trusted_keys[%d]", i)
		if j, dup := names[k.Name]; dup {
			v.errf(p+".name", "duplicate key name %q (also management.trusted_keys[%d])", k.Name, j)
		}
		names[k.Name] = i
		if j, dup := keys[k.PublicKey]; dup && !k.PublicKey.IsZero() {
			v.errf(p+".public_key", "same key as management.trusted_keys[%d]", j)
		}
		keys[k.PublicKey] = i
	}
	v.duration("management.confirm_timeout", m.ConfirmTimeout, 30*time.Second, time.Hour)
	if m.PullURL != "" {
		v.url("management.pull_url", strings.ReplaceAll(m.PullURL, "{uai}", "x"))
	}
	v.duration("management.pull_interval", m.PullInterval, 30*time.Second, 24*time.Hour)
	v.intRange("management.api_port", m.APIPort, 1, 65535)
	for i, tag := range m.NOCTags {
		if !strings.HasPrefix(tag, "tag:") || len(tag) < 5 {
			v.errf(fmt.Sprintf("management.noc_tags[%d]", i), "%q is not a tailnet tag (tag:name)", tag)
		}
	}
}

func (v *validator) statusPage() {
	s := v.c.StatusPage
	v.intRange("status_page.port", s.Port, 1, 65535)
	v.intRange("status_page.https_port", s.HTTPSPort, 1, 65535)
	if s.HTTPSPort == s.Port {
		v.errf("status_page.https_port", "must differ from status_page.port (%d)", s.Port)
	}
	if s.Language != "fr" && s.Language != "en" {
		v.errf("status_page.language", "expected fr or en, got %q", s.Language)
	}
	if h := s.PasswordHash; h != "" && !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") && !strings.HasPrefix(h, "$argon2id$") {
		v.errf("status_page.password_hash", "expected a bcrypt ($2b$...) or argon2id ($argon2id$...) hash, never a password")
	}
	v.duration("status_page.session_timeout", s.SessionTimeout, time.Minute, 12*time.Hour)
	for i, z := range s.Zones {
		if _, ok := v.zones[z]; !ok {
			v.errf(fmt.Sprintf("status_page.zones[%d]", i), "no zone named %q", z)
		} else if v.zones[z].Kind == KindGuest {
			v.errf(fmt.Sprintf("status_page.zones[%d]", i), "guest zone %q may not see the status page", z)
		}
	}
}
