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
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.received, m.replies, m.dropped, m.exhausted, m.storeErrs}
}

var (
	poolSizeDesc = prometheus.NewDesc("passerelle_dhcp_pool_size",
		"Addresses the zone's DHCP pool hands out dynamically (range without reservations).", []string{"zone"}, nil)
	inUseDesc = prometheus.NewDesc("passerelle_dhcp_leases_in_use",
		"Pool addresses held now: live leases, pending offers and declined addresses.", []string{"zone"}, nil)
	leasesDesc = prometheus.NewDesc("passerelle_dhcp_leases_active",
		"Live leases in the zone, reservations included.", []string{"zone"}, nil)
)
