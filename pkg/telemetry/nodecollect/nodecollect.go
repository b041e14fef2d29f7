// Package nodecollect gives the box node_exporter's collectors as a
// library. It is the one place that touches node_exporter's global
// command line: the collector package registers its on/off and option
// flags on kingpin.CommandLine, and their defaults apply only once that
// command line is parsed (without it NewNodeCollector returns zero
// collectors and no error). New parses a synthetic argument list, once per
// process, that enables exactly the collectors a router needs.
package nodecollect

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/node_exporter/collector"
)

// Collectors are node_exporter's collectors the box runs: its load,
// memory, storage, interfaces, connection tracking table, temperatures,
// clock and stalls, and a few more a router's NOC reads (forks and context
// switches, open files, socket counts, the kernel's release).
var Collectors = []string{
	"conntrack",
	"cpu",
	"filefd",
	"filesystem",
	"hwmon",
	"loadavg",
	"meminfo",
	"netdev",
	"pressure",
	"sockstat",
	"stat",
	"thermal_zone",
	"time",
	"uname",
}

// options narrow the collectors to what a box has worth sending: the root
// and /perm file systems only, no loopback, no per-CPU guest time.
// (node_exporter's own --collector.disable-defaults belongs to its main
// package: DisableDefaultCollectors does the same here.)
var options = []string{
	"--collector.filesystem.mount-points-include=^/(perm)?$",
	"--collector.netdev.device-exclude=^lo$",
	"--no-collector.cpu.guest",
}

var (
	parseOnce sync.Once
	parseErr  error
)

// args is the synthetic command line: every collector off by default,
// then exactly ours on.
func args() []string {
	var a []string
	for _, c := range Collectors {
		a = append(a, "--collector."+c)
	}
	return append(a, options...)
}

func parse() error {
	parseOnce.Do(func() {
		app := kingpin.CommandLine
		app.Terminate(nil) // never os.Exit from a library
		if _, err := app.Parse(args()); err != nil {
			parseErr = fmt.Errorf("node_exporter flags: %w", err)
			return
		}
		collector.DisableDefaultCollectors()
	})
	return parseErr
}

// New returns a collector running node_exporter's Collectors. The same
// underlying collectors are shared by every call (node_exporter keeps them
// in a package map).
func New(log *slog.Logger) (prometheus.Collector, error) {
	if err := parse(); err != nil {
		return nil, err
	}
	nc, err := collector.NewNodeCollector(log, Collectors...)
	if err != nil {
		return nil, fmt.Errorf("node collectors: %w", err)
	}
	if len(nc.Collectors) != len(Collectors) {
		got := make([]string, 0, len(nc.Collectors))
		for name := range nc.Collectors {
			got = append(got, name)
		}
		sort.Strings(got)
		return nil, fmt.Errorf("node collectors: got %v, want %v", got, Collectors)
	}
	return nc, nil
}
