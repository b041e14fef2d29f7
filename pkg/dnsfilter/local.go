package dnsfilter

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// What never leaves the box (issue 11): names that only mean something
// on the school's network are answered here, not forwarded, so neither
// the school's UAI (in the box's host name) nor a pupil's device name or
// address reaches a resolver outside.
//
//   - the local domain (dns.local_domain, default home.arpa) and every
//     zone's DHCP search domain: the box, the zones, the DHCP clients'
//     host names from the live leases and the named reservations; wpad
//     and unknown names NXDOMAIN;
//   - localhost and *.localhost (RFC 6761): 127.0.0.1 and ::1;
//   - single-label names, .local (mDNS, RFC 6762) and the private-use
//     suffixes (lan, internal...): NXDOMAIN;
//   - reverse lookups of private and special addresses (RFC 6303 locally
//     served zones, RFC 7793 for 100.64/10): the box's and the leases'
//     PTR, NXDOMAIN for the rest, unless a conditional forward covers the
//     name (the academy's prefixes through the tunnel).

// localTTL is the TTL of local answers and of their negative caching
// (the SOA minimum): leases come and go, so clients must not keep an
// answer long.
const localTTL = 60

// LocalPlan is what the filter answers itself.
type LocalPlan struct {
	// Domain is dns.local_domain; BoxName the box's name under it
	// (<hostname>.<domain>), answered with the box's address in the
	// querier's zone.
	Domain  string
	BoxName string
	Zones   []LocalZone
	// Hosts are the DHCP reservations that have a name: they keep it
	// before any client's own host name.
	Hosts []LocalHost
	// Forwards are the conditional forward domains: a name they cover is
	// forwarded when the box has no record of its own for it.
	Forwards []string
}

// LocalZone is one zone's local names.
type LocalZone struct {
	Name string
	Addr netip.Addr // the box in the zone
	// Name is served as <zone>.<BoxName> (the zone's address); devices as
	// <host>.<Domain>, the zone's DHCP search domain.
	Domain string
	// Whole says the Domain is answered entirely on the box: it lies
	// under the local domain or a private-use suffix. A public domain
	// chosen as search domain only has its device names and wpad
	// answered here; its other names are forwarded.
	Whole bool
	// Guest zones see only their own devices' names (and the box's), and
	// nobody else's.
	Guest bool
}

// LocalHost is a named reservation.
type LocalHost struct {
	Zone  string
	Label string // sanitised
	Addr  netip.Addr
}

// privateSuffixes are suffixes no public name has: names under them are
// answered on the box (NXDOMAIN unless they are local names or a
// conditional forward covers them), and a zone search domain under one
// is answered whole. home.arpa (RFC 8375) and internal (ICANN, 2024) are
// reserved; home and corp will never be delegated (ICANN name collision
// decisions); lan (the search domain of earlier versions, which clients
// keep until their lease renews) and localdomain are in wide private use.
var privateSuffixes = []string{"home.arpa", "internal", "lan", "localdomain", "home", "corp"}

// wpadLabels are never answered with a device: a client naming itself
// wpad would hand every browser of its zone a proxy configuration
// (CVE-2016-3213, CERT VU#598349), isatap a tunnel.
var wpadLabels = []string{"wpad", "isatap"}

// reverseZones are the RFC 6303 locally served zones (and 100.64/10,
// RFC 7793): private, loopback, link-local, documentation and unique
// local prefixes, whose reverse names mean nothing outside the box.
var reverseZones = func() map[string]bool {
	z := map[string]bool{
		"10.in-addr.arpa": true, "168.192.in-addr.arpa": true, "254.169.in-addr.arpa": true, "127.in-addr.arpa": true,
		"0.in-addr.arpa": true, "255.255.255.255.in-addr.arpa": true,
		"2.0.192.in-addr.arpa": true, "100.51.198.in-addr.arpa": true, "113.0.203.in-addr.arpa": true,
		"d.f.ip6.arpa": true, "c.f.ip6.arpa": true, // fc00::/7
		"8.e.f.ip6.arpa": true, "9.e.f.ip6.arpa": true, "a.e.f.ip6.arpa": true, "b.e.f.ip6.arpa": true, // fe80::/10
		"8.b.d.0.1.0.0.2.ip6.arpa":                   true, // 2001:db8::/32
		strings.Repeat("0.", 32) + "ip6.arpa":        true, // ::
		"1." + strings.Repeat("0.", 31) + "ip6.arpa": true, // ::1
	}
	for i := 16; i <= 31; i++ {
		z[strconv.Itoa(i)+".172.in-addr.arpa"] = true
	}
	for i := 64; i <= 127; i++ {
		z[strconv.Itoa(i)+".100.in-addr.arpa"] = true
	}
	return z
}()

// infraType: these types may be asked of a single label: they are how validating
// resolvers and tools walk the DNS tree (fr. DS), and carry no device
// name. dnsmasq's domain-needed likewise holds back address queries only.
func infraType(t uint16) bool {
	switch t {
	case dns.TypeNS, dns.TypeDS, dns.TypeDNSKEY, dns.TypeSOA:
		return true
	}
	return false
}

// local answers a query for a name that must not leave the box. It
// returns nil when the name is not such a name, or when a conditional
// forward covers it and the box has no record of its own: the query is
// then resolved as usual.
func (f *Filter) local(zone string, req, resp *dns.Msg, name string) *dns.Msg {
	q := req.Question[0]
	lp := &f.policy.Load().plan.Local
	switch {
	case name == "":
		return nil
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		var rr dns.RR
		switch q.Qtype {
		case dns.TypeA:
			rr = &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: netip.MustParseAddr("127.0.0.1").AsSlice()}
		case dns.TypeAAAA:
			rr = &dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: netip.IPv6Loopback().AsSlice()}
		}
		return localReply(req, resp, rr, "localhost", dns.RcodeSuccess)
	}
	if apex, whole, ok := lp.underLocal(name); ok {
		if rr := f.localRecord(zone, lp, q, name); rr != nil || f.localExists(zone, lp, name) {
			return localReply(req, resp, rr, apex, dns.RcodeSuccess)
		}
		if isWPAD(name) {
			return localReply(req, resp, nil, apex, dns.RcodeNameError)
		}
		if !whole || lp.forwarded(name) {
			return nil
		}
		return localReply(req, resp, nil, apex, dns.RcodeNameError)
	}
	for _, suffix := range privateSuffixes {
		if inDomain(name, suffix) {
			if lp.forwarded(name) {
				return nil
			}
			return localReply(req, resp, nil, suffix, dns.RcodeNameError)
		}
	}
	if apex, ok := reverseZone(name); ok {
		if a, full := parseReverse(name); full {
			if target := f.ptrTarget(zone, lp, a); target != "" {
				var rr dns.RR
				if q.Qtype == dns.TypePTR {
					rr = &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: target}
				}
				return localReply(req, resp, rr, apex, dns.RcodeSuccess)
			}
		}
		if lp.forwarded(name) {
			return nil
		}
		if name == apex || f.reverseAncestor(zone, lp, name) {
			var rr dns.RR
			if name == apex && q.Qtype == dns.TypeSOA {
				rr = soa(apex)
			}
			return localReply(req, resp, rr, apex, dns.RcodeSuccess)
		}
		return localReply(req, resp, nil, apex, dns.RcodeNameError)
	}
	switch {
	case name == "local" || strings.HasSuffix(name, ".local"):
		if lp.forwarded(name) {
			return nil
		}
		return localReply(req, resp, nil, "local", dns.RcodeNameError)
	case !strings.Contains(name, ".") && !infraType(q.Qtype):
		if lp.forwarded(name) {
			return nil
		}
		return localReply(req, resp, nil, "", dns.RcodeNameError)
	}
	return nil
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: localTTL}
}

// soa is the SOA of a locally served zone (RFC 6303 section 3: the zone's
// name as MNAME, nobody.invalid as RNAME), "" for the root.
func soa(apex string) *dns.SOA {
	owner := dns.Fqdn(apex)
	return &dns.SOA{Hdr: hdr(owner, dns.TypeSOA), Ns: owner, Mbox: "nobody.invalid.",
		Serial: 1, Refresh: 3600, Retry: 1200, Expire: 604800, Minttl: localTTL}
}

// localReply finishes a local answer: rr (nil for none) with the zone's
// SOA in authority when there is no answer (negative caching, RFC 2308).
func localReply(req, resp *dns.Msg, rr dns.RR, apex string, rcode int) *dns.Msg {
	resp.Authoritative = true
	resp.Rcode = rcode
	if rr != nil {
		resp.Answer = []dns.RR{rr}
	} else {
		resp.Ns = []dns.RR{soa(apex)}
	}
	return finish(req, resp, nil)
}

func isWPAD(name string) bool {
	first, _, _ := strings.Cut(name, ".")
	return slices.Contains(wpadLabels, first)
}

// underLocal says whether name lies in a local domain: the local domain
// itself (whole), or a zone's search domain (whole when private). apex is
// the enclosing zone for the SOA.
func (lp *LocalPlan) underLocal(name string) (apex string, whole, ok bool) {
	if lp.Domain != "" && inDomain(name, lp.Domain) {
		apex, whole, ok = lp.Domain, true, true
	}
	for _, z := range lp.Zones {
		if z.Domain != "" && inDomain(name, z.Domain) && (!ok || len(z.Domain) > len(apex)) && !inDomain(z.Domain, lp.Domain) {
			apex, whole, ok = z.Domain, z.Whole, true
		}
	}
	return apex, whole, ok
}

func inDomain(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// forwarded says whether a conditional forward covers name.
func (lp *LocalPlan) forwarded(name string) bool {
	for _, d := range lp.Forwards {
		if inDomain(name, d) {
			return true
		}
	}
	return false
}

// zone returns the local plan of a zone, nil if unknown.
func (lp *LocalPlan) zone(name string) *LocalZone {
	for i := range lp.Zones {
		if lp.Zones[i].Name == name {
			return &lp.Zones[i]
		}
	}
	return nil
}

// boxAddr is the box's address as the querier's zone reaches it.
func (lp *LocalPlan) boxAddr(zone string) netip.Addr {
	if z := lp.zone(zone); z != nil {
		return z.Addr
	}
	if len(lp.Zones) > 0 {
		return lp.Zones[0].Addr
	}
	return netip.Addr{}
}

// visible says whether a client of zone from may see the names of zone
// of: guest zones see only their own.
func (lp *LocalPlan) visible(from, of string) bool {
	if from == of {
		return true
	}
	if z := lp.zone(from); z != nil && z.Guest {
		return false
	}
	return true
}

// localAddr finds the address name stands for: the box (under its name,
// a zone's name, or as <box host name>.<zone search domain>), or a host.
func (f *Filter) localAddr(zone string, lp *LocalPlan, name string) (netip.Addr, bool) {
	if name == lp.BoxName {
		return lp.boxAddr(zone), true
	}
	boxLabel, _, _ := strings.Cut(lp.BoxName, ".")
	for _, z := range lp.Zones {
		if name == z.Name+"."+lp.BoxName || name == z.Domain || name == boxLabel+"."+z.Domain {
			return z.Addr, true
		}
	}
	if h, ok := f.hosts(lp).byName[name]; ok && lp.visible(zone, h.zone) {
		return h.addr, true
	}
	return netip.Addr{}, false
}

// localRecord is the answer record for name, nil if none (the name may
// still exist: NODATA).
func (f *Filter) localRecord(zone string, lp *LocalPlan, q dns.Question, name string) dns.RR {
	if q.Qtype != dns.TypeA {
		return nil
	}
	a, ok := f.localAddr(zone, lp, name)
	if !ok || !a.Is4() {
		return nil
	}
	return &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: a.AsSlice()}
}

// localExists says whether name exists locally (for NODATA rather than
// NXDOMAIN): a name with an address, a domain apex, or an empty
// non-terminal above one (RFC 8020: NXDOMAIN would deny what lies below).
func (f *Filter) localExists(zone string, lp *LocalPlan, name string) bool {
	if _, ok := f.localAddr(zone, lp, name); ok || name == lp.Domain {
		return true
	}
	if inDomain(lp.BoxName, name) {
		return true
	}
	for _, z := range lp.Zones {
		if inDomain(z.Domain, name) || inDomain(z.Name+"."+lp.BoxName, name) {
			return true
		}
	}
	return false
}

// ptrTarget is the name of a, "" if the box knows none: the box's zone
// addresses are its name, loopback is localhost, hosts their name.
func (f *Filter) ptrTarget(zone string, lp *LocalPlan, a netip.Addr) string {
	if a.IsLoopback() && (a == netip.MustParseAddr("127.0.0.1") || a == netip.IPv6Loopback()) {
		return "localhost."
	}
	for _, z := range lp.Zones {
		if z.Addr == a && lp.BoxName != "" {
			return lp.BoxName + "."
		}
	}
	if h, ok := f.hosts(lp).byAddr[a]; ok && lp.visible(zone, h.zone) {
		return h.name + "."
	}
	return ""
}

// reverseAncestor says whether name is an empty non-terminal above a
// reverse name the box answers.
func (f *Filter) reverseAncestor(zone string, lp *LocalPlan, name string) bool {
	suffix := "." + name
	check := func(a netip.Addr) bool { return strings.HasSuffix(reverseOf(a), suffix) }
	if check(netip.MustParseAddr("127.0.0.1")) || check(netip.IPv6Loopback()) {
		return true
	}
	for _, z := range lp.Zones {
		if check(z.Addr) {
			return true
		}
	}
	for a, h := range f.hosts(lp).byAddr {
		if lp.visible(zone, h.zone) && check(a) {
			return true
		}
	}
	return false
}

// reverseOf is a's reverse name, without the trailing dot.
func reverseOf(a netip.Addr) string {
	r, _ := dns.ReverseAddr(a.String())
	return strings.TrimSuffix(r, ".")
}

// reverseZone returns the locally served reverse zone enclosing name.
func reverseZone(name string) (string, bool) {
	if !strings.HasSuffix(name, ".arpa") {
		return "", false
	}
	for n := name; ; {
		if reverseZones[n] {
			return n, true
		}
		i := strings.IndexByte(n, '.')
		if i < 0 {
			return "", false
		}
		n = n[i+1:]
	}
}

// parseReverse reads the address of a full reverse name.
func parseReverse(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		l := strings.Split(v4, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, s := range l {
			n, err := strconv.ParseUint(s, 10, 8)
			if err != nil || (len(s) > 1 && s[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		l := strings.Split(v6, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, s := range l {
			n, err := strconv.ParseUint(s, 16, 4)
			if err != nil || len(s) != 1 {
				return netip.Addr{}, false
			}
			j := 31 - i
			b[j/2] |= byte(n) << (4 * (1 - j%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
