package dnsfilter

import (
	"sync"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "OTHER"
}

type metrics struct {
	queries      *prometheus.CounterVec
	responses    *prometheus.CounterVec
	blocked      *prometheus.CounterVec
	blockedCat   *prometheus.CounterVec
	safesearch   *prometheus.CounterVec
	ratelimited  *prometheus.CounterVec
	listsLoaded  prometheus.Gauge
	listInfo     *prometheus.GaugeVec
	listDomains  *prometheus.GaugeVec
	listUnenf    *prometheus.GaugeVec
	listUpdates  *prometheus.CounterVec
	logDropped   prometheus.Counter
	dohAddresses prometheus.Gauge
	overload     prometheus.Counter
	tcpRefused   *prometheus.CounterVec
	tcpOpen      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, age func() float64) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_queries_total", Help: "Queries received, by zone."}, []string{"zone"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_responses_total", Help: "Answers sent, by zone and response code."},
			[]string{"zone", "rcode"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_blocked_total",
			Help: "Blocked queries by zone and reason: a UT1 category, deny, bypass or lists-not-loaded."}, []string{"zone", "reason"}),
		blockedCat: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_blocked_category_total",
			Help: "Blocked queries by zone and category: a UT1 category of the lists in use, or deny (the profile's deny rules, one bucket). Blocks for no category (bypass, lists-not-loaded) are only in passerelle_dns_blocked_total."},
			[]string{"zone", "category"}),
		safesearch: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_safesearch_rewrites_total", Help: "Search engine names sent to their safe endpoint."},
			[]string{"zone", "engine"}),
		ratelimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_ratelimited_total", Help: "Queries dropped by the per-client rate limit."},
			[]string{"zone"}),
		listsLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_dns_lists_loaded", Help: "1 once category lists are loaded."}),
		listInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_dns_list_version_info", Help: "The lists version in use (1 for the current one)."},
			[]string{"version"}),
		listDomains: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_dns_list_domains", Help: "Domain entries per category in the lists in use."},
			[]string{"category"}),
		listUnenf: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_dns_list_unenforceable_entries",
			Help: "Entries DNS cannot enforce (urls, expressions), per category: counted, not applied."}, []string{"category", "kind"}),
		listUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_list_updates_total",
			Help: "List update attempts by result: installed, unchanged, checksum, shrink, limit (too large unpacked or too many lines), insecure (not https), error."}, []string{"result"}),
		logDropped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_querylog_dropped_total", Help: "Blocked-query log entries dropped (writer behind or failing)."}),
		dohAddresses: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_dns_doh_blocked_addresses", Help: "DoH endpoint addresses handed to the firewall."}),
		overload: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_overload_dropped_total",
			Help: "UDP queries dropped because too many already waited for upstreams."}),
		tcpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_tcp_refused_total",
			Help: "DNS-over-TCP connections closed on accept, by zone and budget: total (every zone), client (one address), descriptors (process out of files); evicted counts the biggest holder's connections closed to let another client in."},
			[]string{"zone", "reason"}),
		tcpOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_dns_tcp_connections", Help: "DNS-over-TCP connections open, every zone."}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.responses, m.blocked, m.blockedCat, m.safesearch, m.ratelimited, m.listsLoaded, m.listInfo, m.listDomains,
			m.listUnenf, m.listUpdates, m.logDropped, m.dohAddresses, m.overload, m.tcpRefused, m.tcpOpen,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_dns_list_age_seconds", Help: "Age of the lists in use (since installed or loaded)."}, age))
	}
	return m
}

// zoneCounters are one zone's per-query counters, resolved once: looking
// labels up on every query costs more than the rest of a cached answer.
type zoneCounters struct {
	queries, ratelimited   prometheus.Counter
	responses              *prometheus.CounterVec
	zone                   string
	rcodes                 [6]prometheus.Counter // NOERROR..REFUSED
	blockedVec, blockedCat *prometheus.CounterVec
	blockedBy              sync.Map // reason -> blockCounters
}

// blockCounters are the counters one block reason increments: the
// category one is nil for reasons that are no category.
type blockCounters struct{ reason, category prometheus.Counter }

func (z *zoneCounters) blocked(reason string) {
	c, ok := z.blockedBy.Load(reason)
	if !ok {
		bc := blockCounters{reason: z.blockedVec.WithLabelValues(z.zone, reason)}
		if cat := Category(reason); cat != "" {
			bc.category = z.blockedCat.WithLabelValues(z.zone, cat)
		}
		c, _ = z.blockedBy.LoadOrStore(reason, bc)
	}
	bc := c.(blockCounters)
	bc.reason.Inc()
	if bc.category != nil {
		bc.category.Inc()
	}
}

// Category is the category a block reason counts under: the UT1
// category itself, or DenyCategory for the profile's deny rules; "" for
// reasons that are no category (resolver bypass, lists not loaded).
// Reasons come from the lists in use and a fixed set of words, never
// from a query, so the labels stay bounded by the UT1 catalogue.
func Category(reason string) string {
	switch reason {
	case "bypass", "lists-not-loaded", "ddr", "":
		return ""
	}
	return reason
}

// DenyCategory is the one bucket of every profile's deny rules.
const DenyCategory = "deny"

func (z *zoneCounters) response(rcode int) {
	if rcode >= 0 && rcode < len(z.rcodes) {
		z.rcodes[rcode].Inc()
		return
	}
	z.responses.WithLabelValues(z.zone, rcodeName(rcode)).Inc()
}

func (f *Filter) zoneMetrics(zone string) *zoneCounters {
	if z, ok := f.zoneCounters.Load(zone); ok {
		return z.(*zoneCounters)
	}
	z := &zoneCounters{
		zone:        zone,
		queries:     f.m.queries.WithLabelValues(zone),
		ratelimited: f.m.ratelimited.WithLabelValues(zone),
		responses:   f.m.responses,
		blockedVec:  f.m.blocked,
		blockedCat:  f.m.blockedCat,
	}
	for i := range z.rcodes {
		z.rcodes[i] = f.m.responses.WithLabelValues(zone, rcodeName(i))
	}
	v, _ := f.zoneCounters.LoadOrStore(zone, z)
	return v.(*zoneCounters)
}
