package config

import (
	"net/netip"
	"reflect"
	"strings"
	"time"
)

// Defaults live in two places only: the default tags on the types (static
// values, shown in the schema), and applyDerived below (values computed from
// other fields). `passerelle check-config --print-effective` shows the result.

// DefaultUpstreams are Renater's public resolvers, used when dns.upstreams
// is empty, then Quad9 (a non-profit public resolver that keeps no client
// address) as a last resort, so the school keeps DNS when both of
// Renater's stop (issue 13; docs/privacy.md).
var defaultUpstreams = []string{"193.51.24.1:53", "193.51.25.1:53", "9.9.9.9:53"}

// standbyBudgetMB is what a standby link's probes cost a month (30 days),
// in MB: Ethernet frames of each probe and its answer, per target, at
// standby_interval. pkg/uplink sends two ICMP or DNS probes per target
// and round, one HTTP request.
func standbyBudgetMB(p Probe) int {
	if p.StandbyInterval <= 0 {
		return 0
	}
	per, exchange := 2, 130 // echo request and reply: 14+20+8+23 bytes each
	switch p.Kind {
	case ProbeDNS:
		exchange = 60 + 540 // ". NS" and the root servers' list
	case ProbeHTTP:
		per, exchange = 1, 1200 // handshake, HEAD, response, close
	}
	rounds := float64(30*24*time.Hour) / float64(p.StandbyInterval.D())
	return int(rounds*float64(len(p.Targets)*per*exchange)/1e6 + 0.5)
}

// New returns a Config holding every static default, as if decoded from an
// empty document.
func New() *Config {
	c := &Config{}
	applyDefaults(reflect.ValueOf(c).Elem())
	return c
}

// applyDerived fills defaults that depend on other fields. It runs after
// decoding and before validation, and only fills what is unset, so it is
// idempotent.
func applyDerived(c *Config) {
	if c.Identity.Hostname == "" && c.Identity.UAI != "" {
		c.Identity.Hostname = "passerelle-" + strings.ToLower(c.Identity.UAI)
	}
	for i := range c.Uplinks {
		p := &c.Uplinks[i].Probe
		if p.Quorum == 0 {
			p.Quorum = len(p.Targets)/2 + 1
		}
		p.StandbyBudgetMB = standbyBudgetMB(*p)
		if u := &c.Uplinks[i]; u.Addressing == AddressingDHCP && u.LeaseFile == "" && u.Name != "" {
			u.LeaseFile = "/perm/uplink/" + u.Name + ".lease"
		}
	}
	for i := range c.Zones {
		z := &c.Zones[i]
		d := &z.DHCP
		if d.LeaseTime == 0 {
			d.LeaseTime = Duration(12 * time.Hour)
			if z.Kind == KindGuest {
				d.LeaseTime = Duration(2 * time.Hour) // phones come and go
			}
		}
		// The search domain lies under dns.local_domain, which the DNS
		// filter answers itself: names typed by users never leave the box.
		if d.Domain == "" && z.Name != "" && c.Identity.Hostname != "" && c.DNS.LocalDomain != "" {
			d.Domain = z.Name + "." + c.Identity.Hostname + "." + c.DNS.LocalDomain
		}
		if z.Subnet.IsValid() && z.Subnet.Addr().Is4() && z.Subnet.Bits() <= 28 {
			first, last := hostRange(z.Subnet.Masked())
			if !d.RangeStart.IsValid() {
				d.RangeStart = nth(first, 9) // leave the first hosts for the box and servers
			}
			if !d.RangeEnd.IsValid() {
				d.RangeEnd = last.Prev()
			}
		}
	}
	if len(c.DNS.Upstreams) == 0 {
		for _, s := range defaultUpstreams {
			c.DNS.Upstreams = append(c.DNS.Upstreams, Upstream{Address: netip.MustParseAddrPort(s)})
		}
	}
	if c.Telemetry.MetricsZones == nil {
		c.Telemetry.MetricsZones = []string{}
		for _, z := range c.Zones {
			if z.Kind == KindAdministrative {
				c.Telemetry.MetricsZones = append(c.Telemetry.MetricsZones, z.Name)
			}
		}
	}
	if c.StatusPage.Zones == nil {
		c.StatusPage.Zones = []string{}
		for _, z := range c.Zones {
			if z.Kind == KindAdministrative {
				c.StatusPage.Zones = append(c.StatusPage.Zones, z.Name)
			}
		}
	}
}

// hostRange returns the first and last usable host of an IPv4 subnet.
func hostRange(p netip.Prefix) (first, last netip.Addr) {
	first = p.Addr().Next()
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	last = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).Prev()
	return first, last
}

func nth(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}
