package timesync

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	synced   prometheus.Gauge
	steered  prometheus.Gauge
	offset   prometheus.Gauge
	delay    prometheus.Gauge
	stratum  prometheus.Gauge
	lastSync prometheus.Gauge
	queries  *prometheus.CounterVec // result
	adjust   *prometheus.CounterVec // kind
	served   *prometheus.CounterVec // zone, result
}

func newMetrics() *metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	return &metrics{
		synced:   g("passerelle_time_synchronized", "1 when the box's clock is within 128 ms of a good NTP server, measured recently."),
		steered:  g("passerelle_time_clock_steered", "1 when the firmware sets the system clock; 0 when it only measures it."),
		offset:   g("passerelle_time_offset_seconds", "Last measured offset: NTP server time minus the box's time."),
		delay:    g("passerelle_time_delay_seconds", "Round trip of the last good NTP measurement."),
		stratum:  g("passerelle_time_server_stratum", "Stratum of the server of the last good measurement."),
		lastSync: g("passerelle_time_last_sync_timestamp_seconds", "When the last good measurement was made (Unix time)."),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_time_queries_total",
			Help: "NTP queries the box sent to its servers, by result.",
		}, []string{"result"}),
		adjust: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_time_clock_adjustments_total",
			Help: "Corrections applied to the system clock, by kind (step or slew).",
		}, []string{"kind"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_ntp_requests_total",
			Help: "NTP queries received from the zones, by zone and result.",
		}, []string{"zone", "result"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.synced, m.steered, m.offset, m.delay, m.stratum, m.lastSync, m.queries, m.adjust, m.served}
}
