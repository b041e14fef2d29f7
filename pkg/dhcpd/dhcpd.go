package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// LeaseDir holds one lease file per zone; default DefaultLeaseDir.
	LeaseDir string
	// Limits bound the packets handled; zero means DefaultLimits.
	Limits Limits
	// Budget bounds the new clients of a zone; zero means DefaultBudget.
	Budget Budget
	// SaveEvery is the least time between two writes of a zone's lease
	// file; zero means DefaultSaveEvery, negative writes at every change.
	SaveEvery time.Duration
}

// DefaultSaveEvery batches the writes of a zone's lease file: at most one
// every 5 seconds (and one at shutdown), instead of one per ACK, so a
// burst of lease events writes a few files, not megabytes, to the SD card.
//
// Durability: a power cut loses at most the lease changes of the last 5
// seconds. That is safe because the clients concerned still hold their
// addresses and ask for them again: at renewal (RENEWING, at half the
// lease) or when they reconnect (INIT-REBOOT), a request for an address
// nobody else holds is granted and its record restored; and a client that
// finds its new address in use (RFC 5227 probing, which phones and
// computers do) DECLINEs it and gets another. Renewals lost that way only
// make a record look older than it is, and the same renewal fixes it.
const DefaultSaveEvery = 5 * time.Second

// poolWarnRatio is the pool usage above which a warning is raised.
const poolWarnRatio = 0.9

// healthEvery is how often pool usage is checked: leases expire without
// any packet, so usage is re-read on a timer.
const healthEvery = 5 * time.Second

// Server is the DHCP component of the box: one Handler per zone, served on
// the zone's interface once Run has started.
type Server struct {
	log    *slog.Logger
	now    func() time.Time
	health *health.Registry
	opts   Options
	m      *metrics

	mu       sync.Mutex
	plan     *Plan
	handlers map[string]*Handler
	changed  chan struct{}
	// version counts lease table changes (LeasesVersion).
	version atomic.Uint64
	// newProber returns the ARP prober of a zone's link (tests replace it).
	newProber func(device string, src netip.Addr) prober
}

var _ box.Service = (*Server)(nil)

// New returns the DHCP component.
func New(d box.Deps, opts Options) *Server {
	d = d.For("dhcp")
	log, reg := d.Log, d.Metrics
	if opts.LeaseDir == "" {
		opts.LeaseDir = DefaultLeaseDir
	}
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits
	}
	if opts.Budget == (Budget{}) {
		opts.Budget = DefaultBudget
	}
	switch {
	case opts.SaveEvery == 0:
		opts.SaveEvery = DefaultSaveEvery
	case opts.SaveEvery < 0:
		opts.SaveEvery = 0
	}
	s := &Server{
		log:       log,
		now:       d.Now,
		health:    d.Health,
		opts:      opts,
		m:         newMetrics(),
		handlers:  map[string]*Handler{},
		changed:   make(chan struct{}, 1),
		newProber: newARPProber,
	}
	for _, c := range append(s.m.collectors(), s) {
		if err := reg.Register(c); err != nil {
			log.Error("DHCP metrics not registered", "err", err)
		}
	}
	return s
}

func (s *Server) Name() string { return "dhcp" }

func (s *Server) Plan(cfg *config.Config) (box.Plan, error) {
	return compile(cfg, s.opts.LeaseDir)
}

// Apply installs the plan: new zones load their leases, existing ones keep
// theirs (minus what the new plan forbids), removed zones stop serving.
// Sockets follow in Run.
func (s *Server) Apply(ctx context.Context, p box.Plan) error {
	plan, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("dhcp: unexpected plan type %T", p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, z := range plan.Zones {
		keep[z.Name] = true
		if h, ok := s.handlers[z.Name]; ok && s.plan != nil && s.plan.LeaseFile(z.Name) == plan.LeaseFile(z.Name) {
			h.update(z)
			continue
		} else if ok {
			h.Flush() // its file moves: the old one gets the last changes
		}
		log := s.log.With("zone", z.Name)
		hc := handlerConfig{limits: s.opts.Limits, budget: s.opts.Budget, saveEvery: s.opts.SaveEvery}
		h, problem := newHandler(log, z, fileStore{path: plan.LeaseFile(z.Name)}, s.m, hc, s.now)
		code := "dhcp-leases-unreadable:" + z.Name
		if problem != nil {
			log.Error("DHCP leases not restored", "file", plan.LeaseFile(z.Name), "err", problem)
			s.raise(code, health.Warn, fmt.Sprintf("Zone %s: the DHCP leases saved before the restart could not be read (%v); addresses may be handed out twice until clients renew.", z.Name, problem))
		} else {
			s.clear(code)
		}
		h.changed = func() { s.version.Add(1) }
		h.alert = s.poke
		s.handlers[z.Name] = h
	}
	for name, h := range s.handlers {
		if !keep[name] {
			h.Flush()
			delete(s.handlers, name)
			s.clearZone(name)
		}
	}
	s.plan = plan
	s.version.Add(1)
	s.poke()
	return nil
}

// poke wakes Run: a new plan, or a flood to report at once.
func (s *Server) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Server) raise(code string, sev health.Severity, msg string) {
	s.health.Raise(s.Name(), code, sev, msg)
}

func (s *Server) clear(code string) {
	s.health.Clear(code)
}

func (s *Server) clearZone(zone string) {
	for _, c := range []string{"dhcp-pool-full:", "dhcp-leases-unreadable:", "dhcp-leases-unsaved:", "dhcp-starvation:"} {
		s.clear(c + zone)
	}
}

func (s *Server) handler(zone string) *Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[zone]
}

// Run serves every planned zone on its interface until ctx is done,
// following later plans, and writes every zone's pending lease changes
// before it returns.
func (s *Server) Run(ctx context.Context) error {
	type listener struct {
		device string
		server netip.Addr
		cancel context.CancelFunc
	}
	running := map[string]listener{}
	var wg sync.WaitGroup
	defer func() {
		for _, l := range running {
			l.cancel()
		}
		wg.Wait()
		for _, h := range s.snapshot() {
			h.Flush()
		}
	}()
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	for {
		s.mu.Lock()
		want := map[string]ZonePlan{}
		if s.plan != nil {
			for _, z := range s.plan.Zones {
				want[z.Name] = z
			}
		}
		s.mu.Unlock()
		for zone, l := range running {
			if z, ok := want[zone]; !ok || z.Device != l.device || z.Server != l.server {
				l.cancel()
				delete(running, zone)
			}
		}
		for zone, z := range want {
			if _, ok := running[zone]; ok {
				continue
			}
			lctx, cancel := context.WithCancel(ctx)
			running[zone] = listener{device: z.Device, server: z.Server, cancel: cancel}
			wg.Add(2)
			go func() {
				defer wg.Done()
				s.serve(lctx, zone, z.Device)
			}()
			go func() {
				defer wg.Done()
				s.probeLoop(lctx, zone, z.Device, z.Server)
			}()
		}
		s.checkHealth()
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		case <-tick.C:
			for _, h := range s.snapshot() {
				h.maintain()
			}
		}
	}
}

// reopenEvery is how often a zone whose socket cannot be opened (its
// interface missing) is retried.
const reopenEvery = 2 * time.Second

// serve answers one zone's clients on dev until ctx is done.
func (s *Server) serve(ctx context.Context, zone, dev string) {
	log := s.log.With("zone", zone, "interface", dev)
	var lastErr string
	for ctx.Err() == nil {
		conn, err := listen(dev)
		if err != nil {
			if err.Error() != lastErr {
				log.Warn("DHCP cannot listen yet; retrying", "err", err)
				lastErr = err.Error()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(reopenEvery):
			}
			continue
		}
		lastErr = ""
		log.Info("DHCP serving", "event", "dhcp-serving")
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = s.readLoop(conn, zone)
		stop()
		conn.Close()
		if ctx.Err() == nil {
			log.Warn("DHCP socket failed; reopening", "err", err)
			time.Sleep(reopenEvery)
		}
	}
}

func (s *Server) readLoop(conn net.PacketConn, zone string) error {
	buf := make([]byte, maxPacket+1) // one more, so oversized packets are seen as such
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		h := s.handler(zone)
		if h == nil {
			continue
		}
		var src netip.AddrPort
		if ua, ok := from.(*net.UDPAddr); ok {
			src = ua.AddrPort()
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		}
		reply, ok := h.Handle(buf[:n], src)
		if !ok {
			continue
		}
		if _, err := conn.WriteTo(reply.Data, net.UDPAddrFromAddrPort(reply.Dst)); err != nil {
			s.m.dropped.WithLabelValues(zone, "send_error").Inc()
			s.log.Debug("DHCP reply not sent", "zone", zone, "dst", reply.Dst, "err", err)
		}
	}
}

// probeRoundEvery is how often a zone's leased addresses are checked for
// ARP probes due (probeAfter, probeEvery).
const probeRoundEvery = 10 * time.Second

// probeLoop probes the zone's leased addresses with ARP (reclaiming those
// that never answer when the pool runs short) until ctx is done.
func (s *Server) probeLoop(ctx context.Context, zone, dev string, src netip.Addr) {
	p := s.newProber(dev, src)
	tick := time.NewTicker(probeRoundEvery)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h := s.handler(zone)
		if h == nil {
			continue
		}
		if err := h.probeRound(ctx, p); err != nil && err.Error() != lastErr {
			lastErr = err.Error()
			s.log.Info("ARP probes of leased addresses failed", "zone", zone, "interface", dev, "err", err)
		} else if err == nil {
			lastErr = ""
		}
	}
}

// snapshot copies the zone handlers, so the pools can be read without
// holding the server's lock while a handler takes its own.
func (s *Server) snapshot() map[string]*Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.handlers)
}

// checkHealth raises a warning for pools over poolWarnRatio and lease
// files that cannot be written, and clears them when they recover.
func (s *Server) checkHealth() {
	for zone, h := range s.snapshot() {
		pool, inUse, _, storeErr := h.usage()
		code := "dhcp-pool-full:" + zone
		if pool > 0 && float64(inUse) > poolWarnRatio*float64(pool) {
			s.raise(code, health.Warn, fmt.Sprintf("Zone %s: the DHCP pool is %d%% used (%d of %d addresses); new devices may get no address.", zone, inUse*100/pool, inUse, pool))
		} else {
			s.clear(code)
		}
		code = "dhcp-starvation:" + zone
		if _, _, on := h.flood(); on {
			s.raise(code, health.Warn, fmt.Sprintf("Zone %s: more new devices asked for a DHCP address than the zone's budget allows (%g at once, %g a minute): this looks like an address-starvation attack from a device of the zone. Known devices keep their addresses; new ones are served when they ask again, a few seconds later.", zone, s.opts.Budget.NewBurst, s.opts.Budget.NewPerMinute))
		} else {
			s.clear(code)
		}
		code = "dhcp-leases-unsaved:" + zone
		if storeErr != nil {
			s.raise(code, health.Warn, fmt.Sprintf("Zone %s: DHCP leases cannot be saved (%v); a restart would forget them.", zone, storeErr))
		} else {
			s.clear(code)
		}
	}
}

// Describe and Collect export the pools' gauges, computed at scrape time.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolSizeDesc
	ch <- inUseDesc
	ch <- leasesDesc
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	for zone, h := range s.snapshot() {
		pool, inUse, active, _ := h.usage()
		ch <- prometheus.MustNewConstMetric(poolSizeDesc, prometheus.GaugeValue, float64(pool), zone)
		ch <- prometheus.MustNewConstMetric(inUseDesc, prometheus.GaugeValue, float64(inUse), zone)
		ch <- prometheus.MustNewConstMetric(leasesDesc, prometheus.GaugeValue, float64(active), zone)
	}
}
