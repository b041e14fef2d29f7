package nodecollect

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewEnablesExactlyTheRoutersCollectors(t *testing.T) {
	c, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// A second call shares the parsed flags and collectors.
	if _, err := New(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	total := 0
	for _, mf := range mfs {
		names[mf.GetName()] = len(mf.GetMetric())
		total += len(mf.GetMetric())
	}
	for _, want := range []string{"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_load1",
		"node_network_receive_bytes_total", "node_time_seconds", "node_filesystem_avail_bytes"} {
		if names[want] == 0 {
			t.Errorf("no %s", want)
		}
	}
	for n := range names {
		if strings.HasPrefix(n, "node_cpu_guest") || strings.HasPrefix(n, "node_disk_") || strings.HasPrefix(n, "node_arp_") {
			t.Errorf("collector not asked for: %s", n)
		}
	}
	t.Logf("%d families, %d series", len(mfs), total)
}
