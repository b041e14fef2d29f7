package telemetry

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/health"
)

// metrics are the push's own.
type metrics struct {
	lastSuccess  prometheus.Gauge
	series       prometheus.Gauge
	sentBytes    prometheus.Counter
	sentBatches  prometheus.Counter
	errors       prometheus.Counter
	withheld     prometheus.Counter
	droppedTotal *prometheus.CounterVec
	backlogN     prometheus.GaugeFunc
	backlogBytes prometheus.GaugeFunc
}

func newMetrics(backlog func() (int, int64)) *metrics {
	return &metrics{
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_telemetry_last_success_timestamp_seconds",
			Help: "When the receiver last accepted a push, Unix time."}),
		series: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_telemetry_series",
			Help: "Series in the last push."}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_telemetry_sent_bytes_total",
			Help: "Compressed payload bytes the receiver accepted."}),
		sentBatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_telemetry_sent_batches_total",
			Help: "Pushes the receiver accepted (live and from the backlog)."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_telemetry_push_errors_total",
			Help: "Pushes that failed and will be retried (receiver or links down)."}),
		withheld: prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_telemetry_withheld_series_total",
			Help: "Series not pushed because a label looked like a client's address or a hardware address."}),
		droppedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_telemetry_dropped_batches_total",
			Help: "Pushes dropped unsent, by reason: full (the oldest, buffer full), corrupt (bad segment on disk), refused (the receiver said 4xx)."},
			[]string{"reason"}),
		backlogN: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_telemetry_backlog_batches",
			Help: "Pushes waiting for the receiver."}, func() float64 { n, _ := backlog(); return float64(n) }),
		backlogBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "passerelle_telemetry_backlog_bytes",
			Help: "Compressed bytes waiting for the receiver."}, func() float64 { _, b := backlog(); return float64(b) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, reason := range []string{"full", "corrupt", "refused"} {
		m.droppedTotal.WithLabelValues(reason)
	}
	for _, c := range []prometheus.Collector{m.lastSuccess, m.series, m.sentBytes, m.sentBatches, m.errors,
		m.withheld, m.droppedTotal, m.backlogN, m.backlogBytes} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("telemetry metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) dropped(reason string, n int) {
	m.droppedTotal.WithLabelValues(reason).Add(float64(n))
}

// warningKinds counts the raised warnings per kind: the code up to its
// first ':' ("interface-missing:wan1" is of kind interface-missing), so
// the NOC alerts on a kind without knowing every interface or zone name.
type warningKinds struct{ h *health.Registry }

var warningKindDesc = prometheus.NewDesc("passerelle_health_warnings",
	"Raised warnings per kind (the code before ':') and severity.", []string{"kind", "severity"}, nil)

func (w warningKinds) Describe(ch chan<- *prometheus.Desc) { ch <- warningKindDesc }

func (w warningKinds) Collect(ch chan<- prometheus.Metric) {
	if w.h == nil {
		return
	}
	type key struct{ kind, sev string }
	n := map[key]int{}
	for _, x := range w.h.List() {
		kind, _, _ := strings.Cut(x.Code, ":")
		n[key{kind, x.Severity.String()}]++
	}
	keys := make([]key, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].kind+keys[i].sev < keys[j].kind+keys[j].sev })
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(warningKindDesc, prometheus.GaugeValue, float64(n[k]), k.kind, k.sev)
	}
}
