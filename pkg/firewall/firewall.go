package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// ErrNoTable means the table does not exist: the firewall never applied
// in this network namespace.
var ErrNoTable = errors.New("table inet " + TableName + " does not exist")

// MaxBlocked bounds the blocked-address sets: DoH provider lists hold a
// few thousand addresses; a million would be a bug upstream.
const MaxBlocked = 1_000_000

// Firewall is the firewall component of the box: it owns the table
// inet passerelle of the network namespace it runs in.
type Firewall struct {
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	k       kernel // where it acts: the current network namespace unless a test says otherwise

	mu       sync.Mutex // one kernel update at a time
	applied  bool       // the table exists: SetBlocked updates it in place
	blocked  []netip.Addr
	blocked6 []netip.Addr
}

var _ box.Component = (*Firewall)(nil)

// New returns the firewall component acting on the current network
// namespace.
func New(d box.Deps) *Firewall {
	d = d.For("firewall")
	f := &Firewall{log: d.Log, now: d.Now, metrics: newMetrics()}
	d.Metrics.MustRegister(f.metrics.applies, f.metrics.applySeconds, f.metrics.blocked, &counterCollector{f: f})
	return f
}

func (f *Firewall) Name() string { return "firewall" }

func (f *Firewall) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

// Apply replaces the table with the plan in one transaction, carrying the
// named counters and the blocked addresses over. On error the kernel kept
// the previous table untouched.
func (f *Firewall) Apply(ctx context.Context, p box.Plan) error {
	plan, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("firewall: unexpected plan type %T", p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := plan.Validate(); err != nil {
		return fmt.Errorf("firewall: invalid plan: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start := f.now()
	carried, err := f.replace(plan)
	took := f.now().Sub(start)
	f.metrics.applySeconds.Observe(took.Seconds())
	if err != nil {
		f.metrics.applies.WithLabelValues("error").Inc()
		return fmt.Errorf("firewall: %w", err)
	}
	f.metrics.applies.WithLabelValues("ok").Inc()
	f.applied = true
	f.log.Debug("table replaced", "table", "inet "+TableName, "took", took, "counters_carried", carried,
		"blocked", len(f.blocked)+len(f.blocked6))
	return nil
}

// SetBlocked replaces the contents of the blocked-address sets (dropped
// from zones whose DNS profile protects minors: DNS-over-HTTPS endpoints,
// found by the DNS filter). The addresses are kept: every later Apply
// re-adds them to the new table. Before the first Apply they are only
// kept. On error the previous addresses stay, in the kernel and here.
func (f *Firewall) SetBlocked(ctx context.Context, addrs []netip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v4, v6, err := splitBlocked(addrs)
	if err != nil {
		return fmt.Errorf("firewall: blocked addresses: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applied {
		if err := f.replaceBlocked(v4, v6); err != nil {
			return fmt.Errorf("firewall: blocked addresses: %w", err)
		}
	}
	f.blocked, f.blocked6 = v4, v6
	f.metrics.blocked.Set(float64(len(v4) + len(v6)))
	return nil
}

// Blocked returns the blocked addresses currently kept.
func (f *Firewall) Blocked() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(slices.Clone(f.blocked), f.blocked6...)
}

// splitBlocked validates, deduplicates and sorts addresses by family.
// Addresses no server has (unspecified, loopback, multicast, link-local:
// what a sinkholing resolver answers for a DoH name) are left out: no
// forwarded packet goes there anyway.
func splitBlocked(addrs []netip.Addr) (v4, v6 []netip.Addr, err error) {
	if len(addrs) > MaxBlocked {
		return nil, nil, fmt.Errorf("%d addresses, at most %d", len(addrs), MaxBlocked)
	}
	for i, a := range addrs {
		a = a.Unmap()
		switch {
		case !a.IsValid():
			return nil, nil, fmt.Errorf("address %d is not set", i)
		case a.Zone() != "":
			return nil, nil, fmt.Errorf("%v (address %d) has a zone", a, i)
		case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast():
		case a.Is4():
			v4 = append(v4, a)
		default:
			v6 = append(v6, a)
		}
	}
	for _, s := range []*[]netip.Addr{&v4, &v6} {
		slices.SortFunc(*s, netip.Addr.Compare)
		*s = slices.Compact(*s)
	}
	return v4, v6, nil
}

type metrics struct {
	applies      *prometheus.CounterVec
	applySeconds prometheus.Histogram
	blocked      prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_firewall_applies_total",
			Help: "Replacements of the nftables table, by result (ok, error).",
		}, []string{"result"}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "passerelle_firewall_apply_seconds",
			Help:    "Time to replace the nftables table.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		blocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "passerelle_firewall_blocked_addresses",
			Help: "Addresses in the blocked sets (DNS filter bypass defence).",
		}),
	}
}

var (
	descPackets = prometheus.NewDesc("passerelle_firewall_packets_total",
		"Packets counted by a named counter of the table (zone pairs fwd-SRC-DST and in-SRC, rules, port forwards, drops).",
		[]string{"counter"}, nil)
	descBytes = prometheus.NewDesc("passerelle_firewall_bytes_total",
		"Bytes counted by a named counter of the table.", []string{"counter"}, nil)
)

// counterCollector reads the kernel's counters at scrape time, so the
// metrics are exactly what `passerelle firewall show` prints.
type counterCollector struct{ f *Firewall }

func (c *counterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPackets
	ch <- descBytes
}

func (c *counterCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.f.Counters()
	if err != nil {
		c.f.log.Debug("could not read counters for metrics", "err", err)
		return
	}
	for _, k := range counters {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(k.Packets), k.Name)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(k.Bytes), k.Name)
	}
}

// CounterValue is one named counter of the live table.
type CounterValue struct {
	Name           string
	Packets, Bytes uint64
}
