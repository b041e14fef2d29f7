// Package dnsfilter is the box's filtering DNS resolver for minors: a
// server on every LAN zone's box address (UDP and TCP, never on uplinks),
// per-zone profiles built from UT1 categories and custom lists, safe
// search, bypass defences, Extended DNS Errors naming the block reason, a
// per-client rate limit, privacy-preserving counters and log, and list
// versions refreshed outside school hours. Resolution and caching are
// pkg/resolver's; the lists are pkg/ut1's.
package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/resolver"
	"passerelle/pkg/ut1"
)

// AddressBlocker is the firewall's set of addresses zones may not reach:
// the filter hands it the addresses of DoH endpoints.
type AddressBlocker interface {
	SetBlocked(ctx context.Context, addrs []netip.Addr) error
}

// Options are the filter's dependencies. Zero values are usable: no
// metrics, no firewall, no warnings, the real clock, port 53.
type Options struct {
	Blocker AddressBlocker
	// Port is the port served on zone addresses; 0 means 53 (tests and
	// benchmarks use others).
	Port int
	// HTTPClient fetches list updates; nil means http.DefaultClient.
	HTTPClient *http.Client
	// UDPSockets is the number of UDP sockets per zone address sharing
	// the port; 0 means one per CPU.
	UDPSockets int
	// Leases are the DHCP clients' host names, answered under their
	// zone's search domain; nil answers only the box's names and the
	// named reservations.
	Leases LeaseNames
	// Own, if valid, is where the box's own lookups are answered
	// (cmd/passerelle: 127.0.0.1, named in the image's /etc/resolv.conf):
	// the NTP servers, the pull and metrics URLs, tailscaled's control
	// server. They are resolved unfiltered, through the same cache,
	// upstreams and conditional forwards as the zones; without it the
	// box asks [::1]:53 and nobody answers.
	Own netip.Addr
}

// OwnZone names the box's own listener in metrics, logs and warnings; a
// zone of the configuration can never have this name (no hyphen).
const OwnZone = "box-own"

// maxInflight bounds the UDP queries waiting for upstreams at once; more
// are dropped (and counted). Each may hold an upstream answer of up to
// 64 KB until it is sent (truncated) to its client: 1024 bound that to
// 64 MB, where 8192 allowed 512 MB (issue 12), and still carry 50,000
// queries a second at 20 ms of upstream latency.
const maxInflight = 1024

// Filter is the DNS component of the box.
type Filter struct {
	log     *slog.Logger
	now     func() time.Time
	health  *health.Registry
	opt     Options
	res     *resolver.Resolver
	limiter *rateLimiter
	tcp     *tcpLimiter // connection budgets of DNS over TCP (tcplimit.go)
	qlog    *queryLog
	stats   hourlyStats
	m       *metrics

	zoneCounters sync.Map // zone -> *zoneCounters
	// inflight bounds the UDP queries waiting for upstreams at once.
	inflight chan struct{}

	policy      atomic.Pointer[policy]
	lists       atomic.Pointer[ut1.Lists]
	listsSince  atomic.Int64 // unix nanoseconds the lists in use were installed
	listsKick   chan struct{}
	hostTab     atomic.Pointer[hostTable] // device names (hosts.go)
	hostMu      sync.Mutex                // one rebuild of hostTab at a time
	listsLoaded chan struct{}             // closed at the first successful load (tests)
	loadedOnce  sync.Once

	mu        sync.Mutex
	plan      *Plan
	listeners map[string]*listener // by zone
	running   bool
	wg        sync.WaitGroup
}

// listener is the server on one zone address.
type listener struct {
	zone    string
	addr    string // host:port
	udp     []net.PacketConn
	tcp     net.Listener
	servers []*dns.Server
	serving bool
	err     error
}

// New returns the DNS filter. Until its first Apply it serves nothing.
func New(d box.Deps, o Options) *Filter {
	d = d.For("dns")
	if o.Port == 0 {
		o.Port = 53
	}
	if o.UDPSockets == 0 {
		o.UDPSockets = runtime.NumCPU()
	}
	f := &Filter{
		log: d.Log, now: d.Now, health: d.Health, opt: o,
		limiter:     newRateLimiter(d.Now),
		listeners:   map[string]*listener{},
		listsKick:   make(chan struct{}, 1),
		listsLoaded: make(chan struct{}),
		inflight:    make(chan struct{}, maxInflight),
	}
	f.m = newMetrics(d.Metrics, func() float64 {
		if s := f.listsSince.Load(); s != 0 {
			return f.now().Sub(time.Unix(0, s)).Seconds()
		}
		return 0
	})
	f.tcp = newTCPLimiter(d.Log, d.Now, f.m.tcpRefused, f.m.tcpOpen)
	f.res = resolver.New(d.Log.With("part", "resolver"), d.Metrics, d.Now)
	f.qlog = newQueryLog(d.Log.With("part", "querylog"), f.m.logDropped)
	empty, _ := newPolicy(&Plan{}, nil)
	f.policy.Store(empty)
	return f
}

func (f *Filter) Name() string { return "dns" }

// Plan implements box.Component.
func (f *Filter) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

// Apply swaps in the new plan: the resolver's configuration, the policy
// (atomically: queries in flight finish with the old one), the listeners
// (new zones bound, removed ones closed). Lists are (re)loaded in the
// background by Run: until then fail-closed profiles answer blocked.
func (f *Filter) Apply(ctx context.Context, p box.Plan) error {
	plan, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("dns: unexpected plan type %T", p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pol, err := newPolicy(plan, f.lists.Load())
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	old := f.plan
	f.res.Configure(plan.Resolver)
	f.limiter.setRate(plan.RateLimit)
	f.qlog.configure(plan.Privacy)
	f.plan = plan
	f.policy.Store(pol)
	f.reportProfiles(pol)
	f.reconcileListeners(plan)
	if old == nil || old.Lists != plan.Lists || f.lists.Load() == nil {
		f.kickLists()
	}
	return nil
}

// Run serves until ctx is done: the listeners, the list manager, the
// blocked-query log and housekeeping.
func (f *Filter) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("dns: already running")
	}
	f.running = true
	for _, l := range f.listeners {
		f.startLocked(l)
	}
	f.mu.Unlock()

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { f.manageLists(ctx) })
	bg.Go(func() { f.qlog.run(stop, f.now) })
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			close(stop)
			f.mu.Lock()
			for zone, l := range f.listeners {
				f.closeLocked(l)
				delete(f.listeners, zone)
			}
			f.running = false
			f.mu.Unlock()
			f.wg.Wait()
			bg.Wait()
			return nil
		case <-tick.C:
			f.mu.Lock()
			if f.plan != nil {
				f.reconcileListeners(f.plan) // rebinds what failed
			}
			f.mu.Unlock()
			if n%30 == 29 {
				returnFreeMemory(f.log)
			}
			if n%10 == 0 {
				f.limiter.prune()
			}
		}
	}
}

// Stats returns the aggregate counters of blocked queries per hour, zone
// and reason (the last two days).
func (f *Filter) Stats() []HourStat { return f.stats.list() }

// Lists returns the lists in use, nil until loaded.
func (f *Filter) Lists() *ut1.Lists { return f.lists.Load() }

// reconcileListeners binds a listener per zone of the plan and closes the
// others. A bind that fails is reported and retried every second by Run.
func (f *Filter) reconcileListeners(plan *Plan) {
	want := map[string]string{}
	for _, l := range plan.Listeners {
		want[l.Zone] = net.JoinHostPort(l.Addr.String(), fmt.Sprint(f.opt.Port))
	}
	if f.opt.Own.IsValid() {
		want[OwnZone] = net.JoinHostPort(f.opt.Own.String(), fmt.Sprint(f.opt.Port))
	}
	for zone, l := range f.listeners {
		if want[zone] != l.addr {
			f.closeLocked(l)
			delete(f.listeners, zone)
			f.log.Info("stopped serving zone", "zone", zone, "addr", l.addr)
		}
	}
	for zone, addr := range want {
		if l, ok := f.listeners[zone]; ok && l.err == nil {
			continue
		}
		l := f.bind(zone, addr)
		f.listeners[zone] = l
		code := "dns-listen:" + zone
		if l.err != nil {
			if zone == OwnZone {
				// The zones are still served; the box's own lookups fail.
				f.warn(code, health.Warn, fmt.Sprintf("DNS cannot listen on %s for the box's own lookups (NTP, NOC, tunnel names): %v", addr, l.err))
				continue
			}
			f.warn(code, health.Critical, fmt.Sprintf("DNS cannot listen on %s for zone %s: %v", addr, zone, l.err))
			continue
		}
		f.clear(code)
		f.log.Info("serving zone", "zone", zone, "addr", addr)
		if f.running {
			f.startLocked(l)
		}
	}
}

func (f *Filter) bind(zone, addr string) *listener {
	l := &listener{zone: zone, addr: addr}
	for range f.opt.UDPSockets {
		pc, err := listenUDP(addr, true)
		if err != nil {
			l.err = err
			break
		}
		l.udp = append(l.udp, pc)
	}
	if l.err == nil {
		l.tcp, l.err = listenTCP(addr)
	}
	if l.err != nil {
		for _, pc := range l.udp {
			pc.Close()
		}
		if l.tcp != nil {
			l.tcp.Close()
		}
		l.udp, l.tcp = nil, nil
	}
	return l
}

func (f *Filter) startLocked(l *listener) {
	if l.serving || l.err != nil {
		return
	}
	l.serving = true
	h := &zoneHandler{f: f, zone: l.zone}
	for _, pc := range l.udp {
		f.wg.Go(func() {
			if err := f.serveUDP(l.zone, pc); err != nil {
				f.log.Warn("dns server stopped", "zone", l.zone, "addr", l.addr, "net", "udp", "err", err)
			}
		})
	}
	l.servers = append(l.servers, &dns.Server{Listener: f.tcp.wrap(l.tcp, l.zone), Handler: h})
	for _, s := range l.servers {
		f.wg.Go(func() {
			if err := s.ActivateAndServe(); err != nil {
				f.log.Warn("dns server stopped", "zone", l.zone, "addr", l.addr, "err", err)
			}
		})
	}
}

func (f *Filter) closeLocked(l *listener) {
	if l.serving {
		for _, s := range l.servers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := s.ShutdownContext(ctx); err != nil {
				f.log.Debug("dns server shutdown", "zone", l.zone, "err", err)
			}
			cancel()
		}
	}
	// Shutdown closes started servers' sockets; close ours in any case
	// (closing twice is harmless).
	for _, pc := range l.udp {
		pc.Close()
	}
	if l.tcp != nil {
		l.tcp.Close()
	}
	l.serving = false
}

func (f *Filter) warn(code string, sev health.Severity, msg string) {
	f.health.Raise("dns", code, sev, msg)
}

func (f *Filter) clear(code string) {
	f.health.Clear(code)
}
