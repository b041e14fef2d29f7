package telemetry

import "strings"

// The push carries at most ~500 series and ~10 KB of compressed payload a
// minute per box (issue 15; the lab test measures the lycée example). The
// local /metrics page shows everything; the push leaves out, of
// node_exporter's series, those the NOC's dashboards and alerts do not
// read and that cost the most per box: per-interface counters other than
// bytes, packets, errors and drops; most of /proc/meminfo and
// /proc/net/sockstat; the collectors' own durations.

// pushedMemory are the node_memory_* series sent.
var pushedMemory = map[string]bool{
	"node_memory_MemTotal_bytes":     true,
	"node_memory_MemAvailable_bytes": true,
	"node_memory_MemFree_bytes":      true,
	"node_memory_Buffers_bytes":      true,
	"node_memory_Cached_bytes":       true,
	"node_memory_Slab_bytes":         true,
	"node_memory_Shmem_bytes":        true,
	"node_memory_SwapTotal_bytes":    true,
	"node_memory_SwapFree_bytes":     true,
}

// pushedSockstat are the node_sockstat_* series sent.
var pushedSockstat = map[string]bool{
	"node_sockstat_sockets_used":  true,
	"node_sockstat_TCP_inuse":     true,
	"node_sockstat_TCP_tw":        true,
	"node_sockstat_TCP_orphan":    true,
	"node_sockstat_TCP_mem_bytes": true,
	"node_sockstat_UDP_inuse":     true,
}

// notPushed reports whether a family stays on the box.
func notPushed(name string) bool {
	switch {
	case name == "node_scrape_collector_duration_seconds":
		return true
	case strings.HasPrefix(name, "node_memory_"):
		return !pushedMemory[name]
	case strings.HasPrefix(name, "node_sockstat_"):
		return !pushedSockstat[name]
	case strings.HasPrefix(name, "node_network_receive_"), strings.HasPrefix(name, "node_network_transmit_"):
		for _, k := range []string{"_bytes_total", "_packets_total", "_errs_total", "_drop_total"} {
			if strings.HasSuffix(name, k) {
				return false
			}
		}
		return true
	}
	return false
}
