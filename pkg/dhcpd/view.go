package dhcpd

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// LeaseView is one live lease as the technician's status page and
// `passerelle leases` show it (issue 17): read-only, copied out of the
// lease table.
type LeaseView struct {
	Zone     string
	Addr     netip.Addr
	MAC      net.HardwareAddr
	Hostname string
	Expiry   time.Time
}

// ZoneUsage is one zone's pool use.
type ZoneUsage struct {
	Zone   string
	Pool   int // addresses in the pool
	InUse  int // pool addresses held now
	Active int // live leases, reservations included
}

// Leases returns the live leases of every zone (zone "" for all), sorted
// by zone and address.
func (s *Server) Leases(zone string) []LeaseView {
	var out []LeaseView
	for name, h := range s.snapshot() {
		if zone != "" && name != zone {
			continue
		}
		h.mu.Lock()
		now := h.now()
		for _, l := range h.t.byAddr {
			if l.Declined || !l.live(now) {
				continue
			}
			out = append(out, LeaseView{Zone: h.zone.Name, Addr: l.Addr, MAC: slices.Clone(l.MAC[:]), Hostname: l.Hostname, Expiry: l.Expiry})
		}
		h.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b LeaseView) int {
		if c := strings.Compare(a.Zone, b.Zone); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	return out
}

// Usage returns every served zone's pool use, sorted by zone.
func (s *Server) Usage() []ZoneUsage {
	var out []ZoneUsage
	for zone, h := range s.snapshot() {
		pool, inUse, active, _ := h.usage()
		out = append(out, ZoneUsage{Zone: zone, Pool: pool, InUse: inUse, Active: active})
	}
	slices.SortFunc(out, func(a, b ZoneUsage) int { return strings.Compare(a.Zone, b.Zone) })
	return out
}
