package dhcpd

import (
	"net"
	"net/netip"
	"slices"
)

// NamedLease is one live lease whose client sent a host name (option 12),
// as the DNS filter answers it: read-only, copied out of the lease table.
type NamedLease struct {
	Zone     string
	Addr     netip.Addr
	MAC      net.HardwareAddr
	Hostname string // as the client sent it (plain characters only); the reader sanitises it for DNS
}

// NamedLeases returns the live leases carrying a host name, of every zone,
// sorted by zone and address.
func (s *Server) NamedLeases() []NamedLease {
	var out []NamedLease
	for _, h := range s.snapshot() {
		out = h.namedLeases(out)
	}
	slices.SortFunc(out, func(a, b NamedLease) int {
		if a.Zone != b.Zone {
			if a.Zone < b.Zone {
				return -1
			}
			return 1
		}
		return a.Addr.Compare(b.Addr)
	})
	return out
}

// LeasesVersion changes whenever a lease may have been granted, renewed,
// released or dropped, or a zone's table replaced: a reader of
// NamedLeases rereads them when it changes. (Leases also end by expiry,
// with no event: a reader checks them again from time to time.)
func (s *Server) LeasesVersion() uint64 { return s.version.Load() }

func (h *Handler) namedLeases(out []NamedLease) []NamedLease {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for _, l := range h.t.byAddr {
		if l.Hostname == "" || l.Declined || !l.live(now) {
			continue
		}
		out = append(out, NamedLease{Zone: h.zone.Name, Addr: l.Addr, MAC: slices.Clone(l.MAC[:]), Hostname: l.Hostname})
	}
	return out
}
