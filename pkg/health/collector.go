package health

import "github.com/prometheus/client_golang/prometheus"

var (
	warningDesc = prometheus.NewDesc("passerelle_health_warning",
		"1 for each raised warning.", []string{"code", "component", "severity"}, nil)
	sinceDesc = prometheus.NewDesc("passerelle_health_warning_since_seconds",
		"When each raised warning started, Unix time.", []string{"code"}, nil)
)

// Collector exposes the current warnings as metrics, read at scrape time.
func (r *Registry) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Registry }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- warningDesc
	ch <- sinceDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, w := range c.r.List() {
		ch <- prometheus.MustNewConstMetric(warningDesc, prometheus.GaugeValue, 1, w.Code, w.Component, w.Severity.String())
		ch <- prometheus.MustNewConstMetric(sinceDesc, prometheus.GaugeValue, float64(w.Since.UnixNano())/1e9, w.Code)
	}
}
