package dhcpd

import (
	"context"
	"net/netip"
)

// prober tells which addresses answer on the zone's link (ARP on Linux,
// arp_linux.go; a fake in tests).
type prober interface {
	// Probe asks each address once and returns those that answered.
	Probe(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]bool, error)
}

// probeRound probes the addresses due (table.probeCandidates) and records
// the results. The lock is not held while the probes are out.
func (h *Handler) probeRound(ctx context.Context, p prober) error {
	h.mu.Lock()
	asked := h.now()
	addrs := h.t.probeCandidates(asked, maxProbes)
	zone := h.zone.Name
	h.mu.Unlock()
	if len(addrs) == 0 {
		return nil
	}
	answered, err := p.Probe(ctx, addrs)
	if err != nil {
		h.m.probes.WithLabelValues(zone, "error").Add(float64(len(addrs)))
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range addrs {
		result := "silent"
		if answered[a] {
			result = "answered"
		}
		h.m.probes.WithLabelValues(zone, result).Inc()
		h.t.probeResult(a, answered[a], asked)
	}
	return nil
}
