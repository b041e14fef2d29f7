package dnsfilter

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LeaseNames is the DHCP server's live lease table, as the filter reads
// it to answer device names (pkg/dhcpd's Server, through an adapter in
// cmd/passerelle).
type LeaseNames interface {
	// LeasesVersion changes whenever the leases may have changed.
	LeasesVersion() uint64
	// NamedLeases returns the live leases whose client sent a host name.
	NamedLeases() []Lease
}

// Lease is one live lease with the host name its client sent.
type Lease struct {
	Zone     string
	Addr     netip.Addr
	Client   string // identifies the device (its hardware address)
	Hostname string // as sent: sanitised here
}

// hostsMaxAge bounds how long a names table is used without rereading
// the leases: expiries come with no version change.
const hostsMaxAge = 5 * time.Second

// hostTable is the device names of every zone: named reservations, then
// the DHCP clients' own host names. Immutable once built.
type hostTable struct {
	local   *LocalPlan
	version uint64
	built   time.Time
	byName  map[string]hostEntry // fully qualified, lower case, no trailing dot
	byAddr  map[netip.Addr]hostEntry
	// labelOf remembers the name each device holds (zone/client ->
	// label), so the first comer keeps it across rebuilds.
	labelOf map[string]string
}

type hostEntry struct {
	zone string
	name string // fully qualified
	addr netip.Addr
}

// hosts returns the current names table, rebuilt when the leases or the
// plan changed.
func (f *Filter) hosts(lp *LocalPlan) *hostTable {
	var version uint64
	if f.opt.Leases != nil {
		version = f.opt.Leases.LeasesVersion()
	}
	now := f.now()
	fresh := func(t *hostTable) bool {
		return t != nil && t.local == lp && t.version == version && now.Sub(t.built) < hostsMaxAge && !now.Before(t.built)
	}
	if t := f.hostTab.Load(); fresh(t) {
		return t
	}
	f.hostMu.Lock()
	defer f.hostMu.Unlock()
	if t := f.hostTab.Load(); fresh(t) {
		return t
	}
	var leases []Lease
	if f.opt.Leases != nil {
		leases = f.opt.Leases.NamedLeases()
	}
	t := buildHosts(lp, leases, f.hostTab.Load(), version, now)
	f.hostTab.Store(t)
	return t
}

// buildHosts names the devices. Reservations first, in config order;
// then the devices that held a name in the previous table keep it; then
// the others, by address. A name already taken gets a suffix -2, -3...
func buildHosts(lp *LocalPlan, leases []Lease, prev *hostTable, version uint64, now time.Time) *hostTable {
	t := &hostTable{local: lp, version: version, built: now,
		byName: map[string]hostEntry{}, byAddr: map[netip.Addr]hostEntry{}, labelOf: map[string]string{}}
	domain := map[string]string{}
	for _, z := range lp.Zones {
		domain[z.Name] = z.Domain
	}
	boxLabel, _, _ := strings.Cut(lp.BoxName, ".")
	taken := func(zone, label string) bool {
		if label == boxLabel || slices.Contains(wpadLabels, label) || label == "localhost" {
			return true
		}
		_, ok := t.byName[label+"."+domain[zone]]
		return ok
	}
	add := func(zone, label string, a netip.Addr, client string) {
		e := hostEntry{zone: zone, name: label + "." + domain[zone], addr: a}
		t.byName[e.name] = e
		if _, ok := t.byAddr[a]; !ok {
			t.byAddr[a] = e
		}
		if client != "" {
			t.labelOf[zone+"/"+client] = label
		}
	}
	for _, h := range lp.Hosts {
		if domain[h.Zone] == "" || h.Label == "" || taken(h.Zone, h.Label) {
			continue
		}
		add(h.Zone, h.Label, h.Addr, "")
	}
	var rest []Lease
	kept := map[int]bool{}
	for i, l := range leases {
		base := sanitizeLabel(l.Hostname)
		if base == "" || domain[l.Zone] == "" {
			continue
		}
		if _, reserved := t.byAddr[l.Addr]; reserved {
			continue // the reservation's name is the address's name
		}
		if prev == nil || l.Client == "" {
			continue
		}
		if label, ok := prev.labelOf[l.Zone+"/"+l.Client]; ok && sameBase(label, base) && !taken(l.Zone, label) {
			add(l.Zone, label, l.Addr, l.Client)
			kept[i] = true
		}
	}
	for i, l := range leases {
		if !kept[i] {
			rest = append(rest, l)
		}
	}
	slices.SortStableFunc(rest, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	for _, l := range rest {
		base := sanitizeLabel(l.Hostname)
		if base == "" || domain[l.Zone] == "" {
			continue
		}
		if _, known := t.byAddr[l.Addr]; known || slices.Contains(wpadLabels, base) || base == "localhost" {
			continue // never a device's name, not even with a suffix
		}
		label := base
		for n := 2; taken(l.Zone, label); n++ {
			s := "-" + strconv.Itoa(n)
			label = strings.TrimRight(base[:min(len(base), 63-len(s))], "-") + s
		}
		add(l.Zone, label, l.Addr, l.Client)
	}
	return t
}

// sameBase says whether label is base or base with a -N suffix.
func sameBase(label, base string) bool {
	if label == base {
		return true
	}
	i := strings.LastIndexByte(label, '-')
	if i < 0 {
		return false
	}
	_, err := strconv.Atoi(label[i+1:])
	// A long base was cut to fit the suffix in 63 characters.
	return err == nil && (label[:i] == base || len(label) >= 61 && strings.HasPrefix(base, strings.TrimRight(label[:i], "-")))
}

// sanitizeLabel turns a client's host name into a DNS label (RFC 1123:
// letters, digits, inner hyphens, at most 63): lower case, its first
// label only, any other character a hyphen. "" when nothing is left.
func sanitizeLabel(s string) string {
	s, _, _ = strings.Cut(strings.ToLower(s), ".")
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	s = strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}
