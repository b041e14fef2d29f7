package resolver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	hits, misses, stale, prefetches prometheus.Counter
	upstreamQueries                 *prometheus.CounterVec
	upstreamErrors                  *prometheus.CounterVec
	upstreamLatency                 *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, r *Resolver) *metrics {
	m := &metrics{
		hits:       prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_cache_hits_total", Help: "Answers served from the cache."}),
		misses:     prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_cache_misses_total", Help: "Queries not answered from a fresh cache entry."}),
		stale:      prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_cache_stale_answers_total", Help: "Expired answers served because upstreams failed or were slow (RFC 8767)."}),
		prefetches: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_dns_cache_prefetches_total", Help: "Popular names refreshed before they expired."}),
		upstreamQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_upstream_queries_total", Help: "Queries sent to each upstream."},
			[]string{"upstream"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_dns_upstream_errors_total", Help: "Queries to each upstream that failed (timeout, network error, SERVFAIL, REFUSED, mismatched answer)."},
			[]string{"upstream"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "passerelle_dns_upstream_duration_seconds", Help: "Time upstreams took to answer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2}}, []string{"upstream"}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.stale, m.prefetches, m.upstreamQueries, m.upstreamErrors, m.upstreamLatency,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_dns_cache_entries", Help: "Answers in the cache."},
				func() float64 { return float64(r.CacheLen()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_dns_cache_bytes", Help: "Estimated memory the cached answers hold (bounded by the cache's byte budget)."},
				func() float64 { return float64(r.CacheBytes()) }))
	}
	return m
}
