// Package uplink owns how the box reaches the internet: policy routing
// over the uplinks (Renater, backups), their health, failover and
// balancing, and the addresses of DHCP uplinks.
//
// Each uplink i has a firewall mark (netmark.Uplink(i)), a routing table
// (netmark.UplinkTable(i)) holding its default route, and a rule sending
// marked packets to that table. New flows follow TableActive, whose one
// default route is the chosen uplink, or a weighted multipath route over
// balanced ones. The firewall ties each connection to the uplink it left
// through (ct mark) and restores that mark on its packets, so established
// flows stay where they started whatever TableActive says later.
//
// Health comes from carrier events (netlink, instant) and probe rounds
// sent through each uplink with its mark and bound to its interface, to
// several targets with a quorum, with hysteresis. On failover the manager
// replaces TableActive's route in one netlink message and deletes the
// conntrack entries of the dead uplink (a kernel-side filter on the mark)
// so its NATed flows start again on the new one.
package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/dhcpclient"
	"passerelle/pkg/health"
)

// Options are the manager's optional dependencies.
type Options struct {
	// EventLogSize bounds the in-memory event log (DefaultEventLogSize
	// when 0).
	EventLogSize int

	sys system // tests replace the kernel
}

// Manager is the uplinks component of the box. It is a box.Service: Apply
// sets up routing, Run probes, watches carrier and runs DHCP clients.
type Manager struct {
	log    *slog.Logger
	now    func() time.Time
	sys    system
	warn   *health.Registry
	events *eventLog

	mu       sync.Mutex
	plan     *Plan
	links    map[string]*link // by uplink name
	sel      selection        // what TableActive holds
	selSet   bool             // sel was installed at least once
	runCtx   context.Context  // set while Run runs
	wg       sync.WaitGroup   // Run's workers
	switches uint64
}

// link is the run-time state of one uplink.
type link struct {
	cfg   Link
	tr    *tracker
	lease *dhcpclient.Lease // dhcp uplinks: the lease in effect

	probeKey, dhcpKey   string // what the running workers were started for
	stopProbe, stopDHCP context.CancelFunc
	dhcpGen             uint64 // the running DHCP client's number: older ones are being stopped

	sent, answered uint64 // probes, since the link appeared
	last           Round
	ifindex        int // of its interface as last reported; 0: absent or not yet reported
}

func (l *link) gateway() netip.Addr {
	if l.cfg.DHCP {
		if l.lease == nil {
			return netip.Addr{}
		}
		return l.lease.Gateway
	}
	return l.cfg.Gateway
}

func (l *link) address() netip.Prefix {
	if l.cfg.DHCP {
		if l.lease == nil {
			return netip.Prefix{}
		}
		return l.lease.Address
	}
	return l.cfg.Address
}

// New returns the uplinks component, acting on the current network
// namespace.
func New(d box.Deps, opts Options) *Manager {
	d = d.For("uplinks")
	log, reg := d.Log, d.Metrics
	m := &Manager{
		log:    log,
		now:    d.Now,
		sys:    opts.sys,
		warn:   d.Health,
		events: newEventLog(opts.EventLogSize),
		links:  map[string]*link{},
	}
	if m.sys == nil {
		m.sys = newSystem(log)
	}
	if reg != nil {
		if err := reg.Register(&collector{m: m}); err != nil {
			log.Warn("uplink metrics not registered", "err", err)
		}
	}
	return m
}

func (m *Manager) Name() string { return "uplinks" }

func (m *Manager) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

// Apply installs the rules and per-uplink tables of the plan and chooses
// the uplinks of new flows from what is known of their health (at boot:
// every link with carrier is presumed up until its first probe rounds).
// While Run runs, probers and DHCP clients follow the plan.
func (m *Manager) Apply(ctx context.Context, bp box.Plan) error {
	p, ok := bp.(*Plan)
	if !ok {
		return fmt.Errorf("uplinks: unexpected plan type %T", bp)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	keep := make(map[string]*link, len(p.Links))
	for _, l := range p.Links {
		lk := m.links[l.Name]
		if lk != nil && (lk.cfg.Interface != l.Interface || lk.cfg.DHCP != l.DHCP) {
			m.stopWorkers(lk) // another link under the same name: start afresh
			lk = nil
		}
		if lk == nil {
			lk = &link{cfg: l, tr: newTracker(l.Probe, now)}
		} else {
			lk.cfg = l
			lk.tr.setProbe(l.Probe)
		}
		keep[l.Name] = lk
	}
	for name, lk := range m.links {
		if keep[name] != lk {
			m.stopWorkers(lk)
		}
	}
	m.links, m.plan = keep, p

	var errs []error
	if err := m.sys.syncRouting(p, m.gateways()); err != nil {
		errs = append(errs, err)
	}
	if err := m.reselect(now, "", true); err != nil {
		errs = append(errs, err)
	}
	m.startWorkers()
	m.updateWarnings()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uplinks: %w", err)
	}
	return nil
}

// Run probes the uplinks, follows their carrier and runs the DHCP clients
// until ctx ends; DHCP leases are then released.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("uplinks: already running")
	}
	m.runCtx = ctx
	m.startWorkers()
	m.wg.Go(func() { m.sys.watchCarrier(ctx, m.interfaces, m.carrierChanged) })
	m.mu.Unlock()

	<-ctx.Done()
	m.mu.Lock()
	m.runCtx = nil // no worker starts after this
	for _, lk := range m.links {
		m.stopWorkers(lk)
	}
	m.mu.Unlock()
	m.wg.Wait() // DHCP clients release their leases on the way out
	return nil
}

// startWorkers starts, for every link, the prober and (dhcp) the DHCP
// client its config needs, replacing those started for an older config.
// m.mu is held.
func (m *Manager) startWorkers() {
	if m.runCtx == nil || m.runCtx.Err() != nil {
		return
	}
	for _, lk := range m.links {
		cfg := lk.cfg
		if key := fmt.Sprintf("%s|%d|%#x|%v", cfg.Interface, cfg.Index, cfg.Mark, cfg.Probe); key != lk.probeKey {
			if lk.stopProbe != nil {
				lk.stopProbe()
			}
			ctx, cancel := context.WithCancel(m.runCtx)
			lk.probeKey, lk.stopProbe = key, cancel
			m.wg.Go(func() { m.probeLoop(ctx, lk, cfg) })
		}
		key := ""
		if cfg.DHCP {
			key = fmt.Sprintf("%s|%s|%#x", cfg.Interface, cfg.LeaseFile, cfg.Mark)
		}
		if key == lk.dhcpKey {
			continue
		}
		if lk.stopDHCP != nil {
			lk.stopDHCP()
			lk.stopDHCP = nil
		}
		lk.dhcpKey = key
		if key == "" {
			continue
		}
		lk.dhcpGen++
		gen := lk.dhcpGen
		c, err := dhcpclient.New(dhcpclient.Config{
			Interface: cfg.Interface,
			LeaseFile: cfg.LeaseFile,
			Mark:      cfg.Mark,
			OnLease:   func(old, cur *dhcpclient.Lease) { m.leaseChanged(lk, gen, old, cur) },
			Log:       m.log.With("uplink", cfg.Name),
			Now:       m.now,
		})
		if err != nil {
			m.log.Error("dhcp client not started", "uplink", cfg.Name, "err", err)
			continue
		}
		ctx, cancel := context.WithCancel(m.runCtx)
		lk.stopDHCP = cancel
		m.wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				m.log.Error("dhcp client stopped", "uplink", cfg.Name, "err", err)
			}
		})
	}
}

// stopWorkers stops a link's prober and DHCP client. m.mu is held.
func (m *Manager) stopWorkers(lk *link) {
	if lk.stopProbe != nil {
		lk.stopProbe()
	}
	if lk.stopDHCP != nil {
		lk.stopDHCP()
	}
	lk.stopProbe, lk.stopDHCP = nil, nil
	lk.probeKey, lk.dhcpKey = "", ""
}

// gateways returns each link's gateway by index. m.mu is held.
func (m *Manager) gateways() map[int]netip.Addr {
	gws := map[int]netip.Addr{}
	for _, lk := range m.links {
		if gw := lk.gateway(); gw.IsValid() {
			gws[lk.cfg.Index] = gw
		}
	}
	return gws
}

// reselect chooses the uplinks of new flows and installs them if they
// changed (or if force). why says what triggered it, after an uplink name
// ("renater lost 3 probe rounds in a row"); "" for a config change.
// After a change, the connections of every offline link are deleted:
// whatever they carry is dead, and tied to the link by their mark they
// would never move (flows that went to a fallback link while all were
// down, for one). m.mu is held.
func (m *Manager) reselect(now time.Time, why string, force bool) error {
	if m.plan == nil {
		return nil
	}
	changed, err := m.install(now, why, force)
	if changed {
		for _, l := range m.plan.Links {
			if lk := m.links[l.Name]; lk.tr.state == StateOffline {
				m.flush(lk)
			}
		}
	}
	return err
}

// flush deletes the connections of a link. m.mu is held.
func (m *Manager) flush(lk *link) {
	start := time.Now()
	n, err := m.sys.flushConntrack(lk.cfg.Mark, lk.address().Addr())
	if err != nil {
		m.log.Error("could not delete the connections of a dead uplink", "uplink", lk.cfg.Name, "err", err)
		return
	}
	m.log.Info("connections of the dead uplink deleted", "uplink", lk.cfg.Name, "unmarked", n, "took", time.Since(start))
}

// install is reselect's choice and switch; it reports whether the choice
// changed. m.mu is held.
func (m *Manager) install(now time.Time, why string, force bool) (bool, error) {
	cands := make([]candidate, 0, len(m.plan.Links))
	names := map[int]string{}
	for _, l := range m.plan.Links {
		lk := m.links[l.Name]
		cands = append(cands, candidate{
			Index: l.Index, Name: l.Name, Priority: l.Priority, Weight: l.Weight,
			State: lk.tr.state, Carrier: lk.tr.carrier, Ready: lk.gateway().IsValid(),
		})
		names[l.Index] = l.Name
	}
	sel := choose(cands)
	changed := !sel.equal(m.sel) || !m.selSet
	if !changed && !force {
		return false, nil
	}
	start := time.Now()
	if err := m.sys.setActive(m.plan, sel, m.gateways()); err != nil {
		m.log.Error("could not switch the uplink of new flows", "to", sel.describe(names), "err", err)
		return false, err
	}
	if !changed {
		return false, nil
	}
	m.sel, m.selSet = sel, true
	m.switches++
	desc := sel.describe(names)
	var msg string
	switch {
	case len(sel.Members) == 0:
		msg = fmt.Sprintf("no uplink can carry traffic at %s: none has a gateway", now.Format("15:04"))
	case sel.Fallback:
		msg = fmt.Sprintf("no uplink answers its probes at %s; new connections go to %s until one comes back", now.Format("15:04"), desc)
	case why == "":
		msg = fmt.Sprintf("new connections use %s", desc)
	default:
		msg = fmt.Sprintf("switched to %s at %s", desc, now.Format("15:04"))
	}
	if why != "" {
		msg += ": " + why
	}
	m.events.add(Event{Time: now, Kind: EventSwitch, Uplink: desc, Message: msg})
	m.log.Warn("uplink switch", "event", "uplink-switch", "to", desc, "fallback", sel.Fallback, "why", why, "took", time.Since(start))
	return true, nil
}

// probeLoop runs probe rounds on one link every interval. Rounds overlap
// when the timeout is longer than the interval; their results are handed
// over in order, so "in a row" means in a row.
func (m *Manager) probeLoop(ctx context.Context, lk *link, cfg Link) {
	var pr prober
	var rounds sync.WaitGroup
	defer func() {
		rounds.Wait()
		if pr != nil {
			pr.close()
		}
	}()
	results := make(chan Round)
	pending := map[uint64]Round{}
	var seq, next uint64 = 0, 1
	launch := func() {
		seq++
		start := m.now()
		if pr == nil {
			p, err := m.sys.newProber(cfg)
			if err != nil {
				pending[seq] = Round{Seq: seq, Start: start, Err: err}
				return
			}
			pr = p
		}
		s, p := seq, pr
		rounds.Go(func() {
			r := runRound(ctx, p, cfg.Probe, s, start)
			select {
			case results <- r:
			case <-ctx.Done():
			}
		})
	}
	deliver := func() {
		for {
			r, ok := pending[next]
			if !ok {
				return
			}
			delete(pending, next)
			next++
			m.roundDone(lk, r)
		}
	}
	tick := time.NewTicker(cfg.Probe.Interval)
	defer tick.Stop()
	launch()
	deliver()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			launch()
		case r := <-results:
			pending[r.Seq] = r
		}
		deliver()
	}
}

// probesPerTarget: two ICMP or DNS probes per target and round, so that a
// few percent of random loss almost never fails a round, let alone three
// in a row (TestTrackerRandomLossNoFlap); one HTTP request, which costs a
// connection.
func probesPerTarget(k config.ProbeKind) int {
	if k == config.ProbeHTTP {
		return 1
	}
	return 2
}

// runRound probes every target and waits for the answers, up to the
// timeout.
func runRound(ctx context.Context, pr prober, p Probe, seq uint64, start time.Time) Round {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	n := probesPerTarget(p.Kind)
	type answer struct {
		target int
		rtt    time.Duration
		err    error
	}
	ch := make(chan answer, len(p.Targets)*n)
	for i, t := range p.Targets {
		for range n {
			go func() {
				rtt, err := pr.probe(ctx, t)
				ch <- answer{i, rtt, err}
			}()
		}
	}
	r := Round{Seq: seq, Start: start, Sent: len(p.Targets) * n}
	best := make([]time.Duration, len(p.Targets))
	for range r.Sent {
		a := <-ch
		if a.err != nil {
			if r.Err == nil && !errors.Is(a.err, context.DeadlineExceeded) && !errors.Is(a.err, context.Canceled) {
				r.Err = a.err
			}
			continue
		}
		r.Answered++
		if best[a.target] == 0 || a.rtt < best[a.target] {
			best[a.target] = max(a.rtt, time.Nanosecond)
		}
	}
	var sum time.Duration
	for _, b := range best {
		if b > 0 {
			r.TargetsUp++
			sum += b
		}
	}
	if r.TargetsUp > 0 {
		r.RTT = sum / time.Duration(r.TargetsUp)
	}
	return r
}

// roundDone feeds a finished round to the link's tracker.
func (m *Manager) roundDone(lk *link, r Round) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.links[lk.cfg.Name] != lk {
		return // the link was removed or replaced meanwhile
	}
	lk.sent += uint64(r.Sent)
	lk.answered += uint64(r.Answered)
	lk.last = r
	now := m.now()
	prev := lk.tr.state
	if lk.tr.round(r, now) {
		m.stateChanged(lk, prev, now)
	}
}

// interfaces lists the uplinks' interfaces, for the carrier watcher.
func (m *Manager) interfaces() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.links))
	for _, lk := range m.links {
		names = append(names, lk.cfg.Interface)
	}
	return names
}

// carrierChanged is the carrier watcher's report: the carrier of an
// interface, and its index (0 when it does not exist).
func (m *Manager) carrierChanged(ifname string, up bool, index int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, lk := range m.links {
		if lk.cfg.Interface != ifname {
			continue
		}
		now := m.now()
		replugged := index != 0 && lk.ifindex != 0 && index != lk.ifindex
		appeared := index != 0 && index != lk.ifindex
		lk.ifindex = index
		if replugged && lk.stopProbe != nil {
			// Its probe socket is bound to the old device.
			lk.stopProbe()
			lk.stopProbe, lk.probeKey = nil, ""
			m.startWorkers()
		}
		if lk.tr.carrier == up && !appeared {
			continue
		}
		prev := lk.tr.state
		changed := lk.tr.carrierChanged(up, now)
		m.log.Info("uplink carrier", "uplink", lk.cfg.Name, "interface", ifname, "up", up, "index", index)
		if (up || appeared) && m.plan != nil {
			// A link that went away took its routes along; one that
			// appears has none yet.
			if err := m.sys.syncRouting(m.plan, m.gateways()); err != nil {
				m.log.Error("uplink routes", "err", err)
			}
			if err := m.reselect(now, "", true); err != nil {
				m.log.Error("uplink routes", "err", err)
			}
		}
		if changed {
			m.stateChanged(lk, prev, now)
		}
	}
}

// stateChanged acts on a link's new state: event, new choice of uplinks,
// and, for a dead link, deletion of its connections. m.mu is held.
func (m *Manager) stateChanged(lk *link, prev State, now time.Time) {
	st, name := lk.tr.state, lk.cfg.Name
	why := name + " " + lk.tr.reason
	msg := fmt.Sprintf("%s; it is %s since %s", why, st, now.Format("15:04:05"))
	if prev == StateOffline {
		msg += fmt.Sprintf(", after %s offline", now.Sub(lk.tr.prevSince).Round(time.Second))
	}
	m.events.add(Event{Time: now, Kind: EventState, Uplink: name, Message: msg})
	level := slog.LevelInfo
	if st == StateOffline || st == StateDegraded {
		level = slog.LevelWarn
	}
	m.log.Log(context.Background(), level, "uplink state", "event", "uplink-state", "uplink", name, "state", st.String(), "was", prev.String(), "why", lk.tr.reason)
	changed, err := m.install(now, why, false)
	if err != nil {
		m.log.Error("uplink routes", "err", err)
	}
	for _, l := range m.plan.Links {
		// After a switch every offline link is flushed (see reselect);
		// without one, only the link that just died.
		if olk := m.links[l.Name]; olk.tr.state == StateOffline && (changed || olk == lk) {
			m.flush(olk)
		}
	}
	m.updateWarnings()
}

// leaseChanged is a DHCP client's report: the address goes on the
// interface (or away), and the uplink's routes follow. gen numbers the
// client: one being replaced (config change) or whose link is no longer
// planned may only take its own address away.
func (m *Manager) leaseChanged(lk *link, gen uint64, old, cur *dhcpclient.Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	ifname, name := lk.cfg.Interface, lk.cfg.Name
	planned := m.links[name] == lk
	if !planned || gen != lk.dhcpGen {
		if cur == nil && old != nil && (!planned || lk.lease == nil || lk.lease.Address != old.Address) {
			if err := m.sys.setAddress(ifname, old.Address, netip.Prefix{}, 0); err != nil {
				m.log.Error("dhcp address", "uplink", name, "err", err)
			}
		}
		return
	}
	var oldAddr, newAddr netip.Prefix
	var valid time.Duration
	if old != nil {
		oldAddr = old.Address
	}
	if cur != nil {
		newAddr = cur.Address
		valid = cur.Expiry().Sub(now)
	}
	if err := m.sys.setAddress(ifname, oldAddr, newAddr, valid); err != nil {
		m.log.Error("dhcp address", "uplink", name, "err", err)
	}
	lk.lease = cur
	if cur.SameBinding(old) {
		return // a renewal that changed nothing but times
	}
	if err := m.sys.syncRouting(m.plan, m.gateways()); err != nil {
		m.log.Error("uplink routes", "uplink", name, "err", err)
	}
	var msg string
	switch {
	case cur == nil:
		msg = fmt.Sprintf("%s lost its DHCP address %s", name, oldAddr)
	case old == nil:
		msg = fmt.Sprintf("%s got the address %s from %s (gateway %s, lease %s)", name, cur.Address, cur.Server, cur.Gateway, cur.Duration)
	default:
		msg = fmt.Sprintf("%s's address changed from %s to %s (gateway %s)", name, old.Address, cur.Address, cur.Gateway)
	}
	m.events.add(Event{Time: now, Kind: EventLease, Uplink: name, Message: msg})
	m.log.Info("uplink lease", "uplink", name, "event", msg)
	// The gateway may be new: reinstall TableActive even if the choice of
	// uplinks is the same.
	if err := m.reselect(now, msg, true); err != nil {
		m.log.Error("uplink routes", "err", err)
	}
	if oldAddr.IsValid() && oldAddr != newAddr {
		// Connections NATed to the old address cannot continue.
		if n, err := m.sys.flushConntrack(lk.cfg.Mark, oldAddr.Addr()); err != nil {
			m.log.Error("could not delete the connections of the old address", "uplink", name, "err", err)
		} else {
			m.log.Info("connections of the old address deleted", "uplink", name, "count", n)
		}
	}
	m.updateWarnings()
}

// updateWarnings raises or clears the uplink warnings. m.mu is held.
func (m *Manager) updateWarnings() {
	if m.plan == nil {
		return
	}
	offline, best := 0, 0
	for i, l := range m.plan.Links {
		if i == 0 || l.Priority < best {
			best = l.Priority
		}
	}
	var down []string
	for _, l := range m.plan.Links {
		lk := m.links[l.Name]
		code := "uplink-offline:" + l.Name
		if lk.tr.state != StateOffline {
			m.warn.Clear(code)
			continue
		}
		offline++
		down = append(down, l.Name)
		m.warn.Raise("uplinks", code, health.Warn,
			fmt.Sprintf("Uplink %s is offline since %s: it %s.", l.Name, lk.tr.since.Format("15:04:05"), lk.tr.reason))
	}
	if offline > 0 && offline == len(m.plan.Links) {
		m.warn.Raise("uplinks", "uplinks-all-offline", health.Critical,
			"No uplink answers its probes: the school has probably no internet access.")
	} else {
		m.warn.Clear("uplinks-all-offline")
	}
	usingBest := false
	for _, mb := range m.sel.Members {
		if m.plan.Links[mb.Index].Priority == best {
			usingBest = true
		}
	}
	if !usingBest && len(m.sel.Members) > 0 && !m.sel.Fallback {
		var names []string
		for _, mb := range m.sel.Members {
			names = append(names, m.plan.Links[mb.Index].Name)
		}
		m.warn.Raise("uplinks", "uplink-backup-in-use", health.Warn,
			fmt.Sprintf("The school is on its backup link (%s) because %s is not usable.", strings.Join(names, ", "), strings.Join(down, ", ")))
	} else {
		m.warn.Clear("uplink-backup-in-use")
	}
}

// Events returns the recent events, oldest first, for the status page.
func (m *Manager) Events() []Event { return m.events.list() }

// Status is one uplink's state for the status page and the API.
type Status struct {
	Name      string
	Interface string
	State     State
	Since     time.Time
	Reason    string // after the name: "renater lost 3 probe rounds in a row"
	Carrier   bool
	Active    bool // carries new flows
	RTT       time.Duration
	Loss      float64 // over the recent rounds, 0-1
	Address   netip.Prefix
	Gateway   netip.Addr
	Lease     *dhcpclient.Lease // dhcp uplinks
}

// Status returns every uplink's state, in config order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.plan == nil {
		return nil
	}
	out := make([]Status, 0, len(m.plan.Links))
	for _, l := range m.plan.Links {
		lk := m.links[l.Name]
		loss, _ := lk.tr.loss()
		st := Status{
			Name: l.Name, Interface: l.Interface, State: lk.tr.state, Since: lk.tr.since, Reason: lk.tr.reason,
			Carrier: lk.tr.carrier, Active: m.sel.has(l.Index), RTT: lk.tr.medianRTT(), Loss: loss,
			Address: lk.address(), Gateway: lk.gateway(),
		}
		if lk.lease != nil {
			c := *lk.lease
			st.Lease = &c
		}
		out = append(out, st)
	}
	return out
}
