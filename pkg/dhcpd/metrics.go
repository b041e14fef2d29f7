package dhcpd

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's counters, labelled by zone. Pool gauges are
// computed at scrape time by the Server's collector, since leases expire
// without any packet.
type metrics struct {
	received  *prometheus.CounterVec // zone, type
	replies   *prometheus.CounterVec // zone, type
	dropped   *prometheus.CounterVec // zone, reason
	exhausted *prometheus.CounterVec // zone
	storeErrs *prometheus.CounterVec // zone
	// storeBytes counts the bytes of lease files written (flash wear).
	storeBytes      *prometheus.CounterVec // zone
	reclaimedSilent *prometheus.CounterVec // zone
	probes          *prometheus.CounterVec // zone, result
}

func newMetrics() *metrics {
	return &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_requests_total",
			Help: "DHCP requests handled, by zone and message type.",
		}, []string{"zone", "type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_replies_total",
			Help: "DHCP replies sent, by zone and message type.",
		}, []string{"zone", "type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_dropped_total",
			Help: "DHCP packets dropped without a reply, by zone and reason.",
		}, []string{"zone", "reason"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_pool_exhausted_total",
			Help: "Clients that got no address because the zone's pool was full.",
		}, []string{"zone"}),
		storeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_lease_store_errors_total",
			Help: "Failed writes of the zone's lease file.",
		}, []string{"zone"}),
		storeBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_lease_file_bytes_written_total",
			Help: "Bytes of the zone's lease file written to storage.",
		}, []string{"zone"}),
		reclaimedSilent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_reclaimed_silent_total",
			Help: "Leases reclaimed before their end for a new client because the address never answered ARP and the client never renewed.",
		}, []string{"zone"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_dhcp_arp_probes_total",
			Help: "ARP probes of leased addresses, by result (answered, silent, error).",
		}, []string{"zone", "result"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.received, m.replies, m.dropped, m.exhausted, m.storeErrs, m.storeBytes, m.reclaimedSilent, m.probes}
}

var (
	poolSizeDesc = prometheus.NewDesc("passerelle_dhcp_pool_size",
		"Addresses the zone's DHCP pool hands out dynamically (range without reservations).", []string{"zone"}, nil)
	inUseDesc = prometheus.NewDesc("passerelle_dhcp_leases_in_use",
		"Pool addresses held now: live leases, pending offers and declined addresses.", []string{"zone"}, nil)
	leasesDesc = prometheus.NewDesc("passerelle_dhcp_leases_active",
		"Live leases in the zone, reservations included.", []string{"zone"}, nil)
)
