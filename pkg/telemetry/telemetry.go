// Package telemetry is the box's metrics, sent to the academy and shown
// locally: every component's metrics (already on the box's registry),
// node_exporter's collectors (nodecollect) and a count per kind of health
// warning, pushed by Prometheus remote write to the academy's receiver
// (no inbound connection: it works behind any NAT) through the preferred
// uplink or the tunnel, and served as /metrics to the zones allowed to
// read it. Pushes that the receiver or the links do not take wait in a
// bounded buffer that spills to /perm, and are sent oldest first when the
// receiver is back (issue 15, docs/telemetry.md).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/telemetry/nodecollect"
)

// Uplinks is what the push needs of the uplink manager: the mark that pins
// a connection to the named uplink while it is usable, 0 otherwise
// (uplink.Manager.Preferred).
type Uplinks interface {
	Preferred(name string) uint32
}

// Options are the composition's choices.
type Options struct {
	// Gatherer is what is pushed and served: the box's registry.
	Gatherer prometheus.Gatherer
	// Uplinks pins the pushes to the first uplink while it is usable;
	// nil: connections follow the box's routes.
	Uplinks Uplinks
	// NoNodeCollectors leaves node_exporter's collectors out (tests).
	NoNodeCollectors bool
}

// Telemetry is the component.
type Telemetry struct {
	log    *slog.Logger
	now    func() time.Time
	health *health.Registry
	gather prometheus.Gatherer
	links  Uplinks
	m      *metrics

	plan    atomic.Pointer[Plan]
	changed chan struct{}

	bufMu sync.Mutex
	buf   *buffer // of the running plan; read by the backlog gauges
}

// New builds the component and registers its metrics, node_exporter's
// collectors and the warning kinds on d.Metrics.
func New(d box.Deps, o Options) (*Telemetry, error) {
	d = d.For("telemetry")
	t := &Telemetry{log: d.Log, now: d.Now, health: d.Health, gather: o.Gatherer, links: o.Uplinks,
		changed: make(chan struct{}, 1)}
	if t.gather == nil {
		if g, ok := d.Metrics.(prometheus.Gatherer); ok {
			t.gather = g
		} else {
			t.gather = prometheus.NewRegistry()
		}
	}
	t.m = newMetrics(t.backlog)
	if err := t.m.register(d.Metrics); err != nil {
		return nil, err
	}
	if err := d.Metrics.Register(warningKinds{d.Health}); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if !o.NoNodeCollectors {
		// node_exporter logs every ignored mount point at debug level on
		// each collection: only its warnings and errors reach the log.
		nc, err := nodecollect.New(slog.New(minLevel{d.Log.Handler(), slog.LevelWarn}))
		if err != nil {
			return nil, err
		}
		if err := d.Metrics.Register(nc); err != nil {
			return nil, fmt.Errorf("telemetry: node collectors: %w", err)
		}
	}
	return t, nil
}

// Name implements box.Component.
func (t *Telemetry) Name() string { return "telemetry" }

// Plan is what the component does for one config.
type Plan struct {
	Push     bool
	URL      string
	Interval time.Duration
	// UAI, Academy and Hostname label every pushed series.
	UAI, Academy, Hostname string
	Via                    config.TelemetryVia
	Preferred              string // the uplink pushes prefer (via uplink)
	BearerTokenFile        string
	BasicAuthUser          string
	BasicAuthPasswordFile  string
	Tenant                 string
	CAFile                 string
	BufferDir              string
	BufferBytes            int64
	// Listen are the /metrics addresses: the allowed zones' addresses.
	Listen []netip.AddrPort
	// TunnelPort serves /metrics on the tunnel interface too (0: no).
	TunnelPort int
	// Private are the LAN subnets: no pushed label may carry an address
	// in them.
	Private []netip.Prefix
}

// TunnelInterface is the tunnel's interface (pkg/tunnel runs tailscaled
// on it).
const TunnelInterface = "tailscale0"

// Plan implements box.Component.
func (t *Telemetry) Plan(cfg *config.Config) (box.Plan, error) { return PlanFor(cfg), nil }

// PlanFor is the pure part of Plan.
func PlanFor(cfg *config.Config) *Plan {
	tc := cfg.Telemetry
	p := &Plan{
		Push:                  tc.Enabled,
		URL:                   tc.RemoteWriteURL,
		Interval:              time.Duration(tc.Interval),
		UAI:                   cfg.Identity.UAI,
		Academy:               cfg.Identity.Academy,
		Hostname:              cfg.Identity.Hostname,
		Via:                   tc.Via,
		BearerTokenFile:       tc.BearerTokenFile,
		BasicAuthUser:         tc.BasicAuthUser,
		BasicAuthPasswordFile: tc.BasicAuthPasswordFile,
		Tenant:                tc.Tenant,
		CAFile:                tc.CAFile,
		BufferDir:             tc.BufferDirectory,
		BufferBytes:           int64(tc.BufferKiB) << 10,
	}
	if p.Interval <= 0 {
		p.Interval = time.Minute
	}
	if p.Via == "" {
		p.Via = config.TelemetryViaUplink
	}
	if p.Via == config.TelemetryViaUplink && len(cfg.Uplinks) > 0 {
		p.Preferred = cfg.Uplinks[0].Name
	}
	for _, z := range cfg.Zones {
		p.Private = append(p.Private, z.Subnet)
		if slices.Contains(tc.MetricsZones, z.Name) && z.Kind != config.KindGuest && tc.MetricsPort > 0 {
			p.Listen = append(p.Listen, netip.AddrPortFrom(z.Address, uint16(tc.MetricsPort)))
		}
	}
	if cfg.Tunnel.Enabled && tc.MetricsPort > 0 {
		p.TunnelPort = tc.MetricsPort
	}
	return p
}

func (p *Plan) String() string {
	var b strings.Builder
	if p.Push {
		fmt.Fprintf(&b, "push %s every %s via %s", p.URL, p.Interval, p.Via)
		if p.Preferred != "" {
			fmt.Fprintf(&b, " (prefer %s)", p.Preferred)
		}
		fmt.Fprintf(&b, "\n  labels uai=%s academy=%s hostname=%s\n", p.UAI, p.Academy, p.Hostname)
		auth := "none"
		switch {
		case p.BearerTokenFile != "":
			auth = "bearer token from " + p.BearerTokenFile
		case p.BasicAuthUser != "":
			auth = "basic " + p.BasicAuthUser + ", password from " + p.BasicAuthPasswordFile
		}
		fmt.Fprintf(&b, "  auth %s", auth)
		if p.Tenant != "" {
			fmt.Fprintf(&b, ", tenant %s", p.Tenant)
		}
		fmt.Fprintf(&b, "\n  buffer %s, at most %d KiB\n", p.BufferDir, p.BufferBytes>>10)
	} else {
		b.WriteString("push off\n")
	}
	var at []string
	for _, a := range p.Listen {
		at = append(at, a.String())
	}
	if p.TunnelPort > 0 {
		at = append(at, fmt.Sprintf("%s:%d", TunnelInterface, p.TunnelPort))
	}
	if len(at) == 0 {
		b.WriteString("/metrics nowhere\n")
	} else {
		fmt.Fprintf(&b, "/metrics on %s\n", strings.Join(at, " "))
	}
	return b.String()
}

// Apply implements box.Component: the running service takes the new plan
// at once; nothing else to converge.
func (t *Telemetry) Apply(_ context.Context, bp box.Plan) error {
	p, ok := bp.(*Plan)
	if !ok {
		return fmt.Errorf("telemetry: plan of type %T", bp)
	}
	t.plan.Store(p)
	select {
	case t.changed <- struct{}{}:
	default:
	}
	return nil
}

func (t *Telemetry) backlog() (int, int64) {
	t.bufMu.Lock()
	b := t.buf
	t.bufMu.Unlock()
	if b == nil {
		return 0, 0
	}
	return b.stats()
}

// pusher is the push of one plan.
type pusher struct {
	t    *Telemetry
	plan *Plan
	buf  *buffer
	send *sender
	enc  encoder

	failing      bool
	failingSince time.Time
	retryAt      time.Time
	backoff      time.Duration
}

const (
	minBackoff = 2 * time.Second
	maxBackoff = 5 * time.Minute
)

func (t *Telemetry) newPusher(p *Plan, prev *pusher) (*pusher, error) {
	if !p.Push {
		return nil, nil
	}
	u := &pusher{t: t, plan: p}
	if prev != nil && prev.plan.BufferDir == p.BufferDir {
		u.buf = prev.buf
		u.buf.mu.Lock()
		u.buf.max = p.BufferBytes
		u.buf.trim()
		u.buf.mu.Unlock()
		u.failing, u.failingSince = prev.failing, prev.failingSince
	} else {
		if prev != nil {
			prev.buf.spill()
		}
		b, err := openBuffer(p.BufferDir, p.BufferBytes, t.m.dropped)
		if err != nil {
			t.log.Warn("telemetry buffer on disk unusable: unsent pushes are kept in memory only", "dir", p.BufferDir, "err", err)
		}
		u.buf = b
	}
	t.bufMu.Lock()
	t.buf = u.buf
	t.bufMu.Unlock()
	mark := func() uint32 { return 0 }
	if p.Via == config.TelemetryViaUplink && t.links != nil && p.Preferred != "" {
		mark = func() uint32 { return t.links.Preferred(p.Preferred) }
	}
	s, err := newSender(p, mark)
	if err != nil {
		return nil, err
	}
	u.send = s
	u.enc = encoder{
		external: []label{{"academy", p.Academy}, {"hostname", p.Hostname}, {"uai", p.UAI}},
		private:  p.Private,
		drop:     notPushed,
	}
	if n, _ := u.buf.stats(); n > 0 {
		u.failing = true // a backlog from before a restart: spill new batches until it is sent
		if u.failingSince.IsZero() {
			u.failingSince = t.now()
		}
	}
	return u, nil
}

// collect gathers the registry once and queues the compressed batch.
func (u *pusher) collect() {
	now := u.t.now()
	mfs, err := u.t.gather.Gather()
	if err != nil {
		// Gather returns what it could collect with the error.
		u.t.log.Debug("telemetry: gathering had errors", "err", err)
	}
	raw, r := u.enc.encode(mfs, now.UnixMilli())
	payload := s2.EncodeSnappy(nil, raw)
	u.t.m.series.Set(float64(r.series))
	u.t.m.withheld.Add(float64(r.withheld))
	u.buf.add(payload)
	if u.failing {
		if err := u.buf.spill(); err != nil {
			u.t.log.Warn("telemetry: could not keep unsent pushes on disk", "err", err)
		}
	}
}

// drain sends the backlog oldest first until it is empty, a push fails,
// or stop says the next collection is due.
func (u *pusher) drain(ctx context.Context, stop func() bool) {
	if u.t.now().Before(u.retryAt) {
		return
	}
	for !stop() && ctx.Err() == nil {
		seq, data, ok := u.buf.head()
		if !ok {
			return
		}
		start := u.t.now()
		err := u.send.send(ctx, data)
		var refused *errRefused
		switch {
		case err == nil:
			u.buf.pop(seq)
			u.t.m.sentBytes.Add(float64(len(data)))
			u.t.m.sentBatches.Inc()
			u.t.m.lastSuccess.Set(float64(u.t.now().UnixNano()) / 1e9)
			u.backoff = 0
			if u.failing {
				n, bytes := u.buf.stats()
				if n == 0 {
					u.failing = false
					u.t.health.Clear(warnFailing)
					u.t.log.Info("telemetry: the receiver takes pushes again; backlog sent",
						"event", "telemetry-resumed", "after", u.t.now().Sub(u.failingSince))
				} else {
					u.t.log.Debug("telemetry: sending the backlog", "batches", n, "bytes", bytes)
				}
			}
		case errors.As(err, &refused):
			u.buf.pop(seq)
			u.t.m.dropped("refused", 1)
			u.t.log.Warn("telemetry: receiver refused a batch; dropped", "event", "telemetry-refused",
				"status", refused.status, "err", err)
		default:
			if ctx.Err() != nil {
				return
			}
			u.t.m.errors.Inc()
			if u.backoff == 0 {
				u.backoff = minBackoff
			} else {
				u.backoff = min(2*u.backoff, maxBackoff, max(u.plan.Interval*5, minBackoff))
			}
			u.retryAt = u.t.now().Add(u.backoff)
			n, bytes := u.buf.stats()
			if !u.failing {
				u.failing, u.failingSince = true, start
				u.t.log.Warn("telemetry: push failed; keeping the metrics until the receiver is back",
					"event", "telemetry-failing", "err", err, "backlog", n)
			} else {
				u.t.log.Debug("telemetry: push failed", "err", err, "backlog", n, "bytes", bytes, "retry_in", u.backoff)
			}
			if u.t.now().Sub(u.failingSince) > failingWarnAfter {
				u.t.health.Raise("telemetry", warnFailing, health.Warn,
					fmt.Sprintf("Metrics cannot reach the academy since %s; %d pushes kept.", u.failingSince.Format(time.RFC3339), n))
			}
			if err := u.buf.spill(); err != nil {
				u.t.log.Warn("telemetry: could not keep unsent pushes on disk", "err", err)
			}
			return
		}
	}
}

const (
	warnFailing      = "telemetry-failing"
	failingWarnAfter = 15 * time.Minute
)

// Run implements box.Service: collect every interval, push, serve
// /metrics; a new plan from Apply is taken at once.
func (t *Telemetry) Run(ctx context.Context) error {
	var (
		cur   *Plan
		push  *pusher
		srv   = newServer(t)
		tick  *time.Ticker
		tickC <-chan time.Time
	)
	defer func() {
		srv.close()
		if tick != nil {
			tick.Stop()
		}
		if push != nil {
			if err := push.buf.spill(); err != nil {
				t.log.Warn("telemetry: could not keep unsent pushes on disk", "err", err)
			}
		}
	}()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		if p := t.plan.Load(); p != nil && p != cur {
			np, err := t.newPusher(p, push)
			if err != nil {
				t.log.Error("telemetry: push not started", "err", err)
			}
			push, cur = np, p
			if tick != nil {
				tick.Stop()
				tick, tickC = nil, nil
			}
			if push != nil {
				tick = time.NewTicker(p.Interval)
				tickC = tick.C
				push.collect()
			}
			srv.set(p.Listen, p.TunnelPort)
		}
		if push != nil {
			push.drain(ctx, func() bool { return len(tickC) > 0 || len(t.changed) > 0 })
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.changed:
		case <-tickC:
			push.collect()
		case <-retry.C:
			srv.retry()
		}
	}
}

// minLevel drops the records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
