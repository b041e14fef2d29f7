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

	// keep: the link is offline by its probes but still received traffic
	// (rx packets) while they failed, so its connections are kept until
	// that evidence stops (see aliveRxPackets).
	keep       bool
	rxMark     uint64 // rx packets at the first failed round, or the last check while kept
	keptRounds int
	silent     string // the silent targets last reported
	lastLaunch time.Time
}

// aliveRxPackets: a link whose probes all fail but that received at
// least this many packets meanwhile (down_after rounds, under a second
// at the defaults) still carries traffic: only its probe targets are
// unreachable. Its connections are then not deleted (issue 13); a dead
// link receives next to nothing (an ARP exchange now and then).
const aliveRxPackets = 10

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
	if m.now == nil {
		m.now = time.Now
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
		servers := m.plan.DNSServers
		if key := fmt.Sprintf("%s|%d|%#x|%v|%v", cfg.Interface, cfg.Index, cfg.Mark, cfg.Probe, servers); key != lk.probeKey {
			if lk.stopProbe != nil {
				lk.stopProbe()
			}
			ctx, cancel := context.WithCancel(m.runCtx)
			lk.probeKey, lk.stopProbe = key, cancel
			m.wg.Go(func() { m.probeLoop(ctx, lk, cfg) })
			if len(servers) > 0 {
				m.wg.Go(func() { m.dnsLoop(ctx, lk, cfg, servers) })
			}
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
			if lk := m.links[l.Name]; m.dead(lk) {
				m.flush(lk)
			}
		}
	}
	return err
}

// dead says whether a link's connections are beyond saving: offline, and
// not still receiving traffic (see aliveRxPackets). m.mu is held.
func (m *Manager) dead(lk *link) bool { return lk.tr.state == StateOffline && !lk.keep }

// flush deletes the connections of a link. m.mu is held.
func (m *Manager) flush(lk *link) {
	start := time.Now()
	n, err := m.sys.flushConntrack(lk.cfg.Mark, lk.address().Addr())
	if err != nil {
		m.log.Error("could not delete the connections of a dead uplink", "uplink", lk.cfg.Name, "err", err)
		return
	}
	m.log.Info("connections of the dead uplink deleted", "event", "uplink-flush", "uplink", lk.cfg.Name, "unmarked", n, "took", time.Since(start))
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
			Answering: lk.tr.goods > 0,
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
		to, lateLimit, ok := m.launchRound(lk)
		if !ok {
			return // a standby link between its slow rounds
		}
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
			r := runRound(ctx, p, cfg.Probe, s, start, to, lateLimit, func(rtt time.Duration) { m.lateAnswer(lk, rtt) })
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

// launchRound says whether the link's prober launches a round now, and
// with which timeout and late limit. A standby link is probed every
// standby_interval instead of every interval: one that carries no new
// flows while every link preferred to it is online and passing its
// rounds (issue 13: probing a metered backup at full rate costs
// gigabytes a month). As soon as a preferred link fails a round, loses
// its carrier or is not online, every link is probed at full rate.
func (m *Manager) launchRound(lk *link) (timeout, lateLimit time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if m.standby(lk) && !lk.lastLaunch.IsZero() && now.Sub(lk.lastLaunch) < lk.cfg.Probe.StandbyInterval-lk.cfg.Probe.Interval/2 {
		return 0, 0, false
	}
	lk.lastLaunch = now
	return lk.tr.roundTimeout(), lk.tr.lateLimit(), true
}

// standby reports whether a link may be probed slowly. m.mu is held.
func (m *Manager) standby(lk *link) bool {
	if m.plan == nil || lk.cfg.Probe.StandbyInterval <= lk.cfg.Probe.Interval || !m.selSet || m.sel.Fallback || m.sel.has(lk.cfg.Index) {
		return false
	}
	preferred := false
	for _, l := range m.plan.Links {
		if l.Priority >= lk.cfg.Priority {
			continue
		}
		preferred = true
		o := m.links[l.Name]
		if o.tr.state != StateOnline || !o.tr.carrier || o.tr.fails > 0 || !o.gateway().IsValid() {
			return false // the primary is in doubt
		}
	}
	return preferred
}

// lateAnswer records an answer that came after its round's timeout.
func (m *Manager) lateAnswer(lk *link, rtt time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.links[lk.cfg.Name] != lk {
		return
	}
	lk.tr.late(rtt)
}

// runRound probes every target and waits for the answers up to timeout;
// answers that come later, up to lateLimit, are handed to late.
func runRound(ctx context.Context, pr prober, p Probe, seq uint64, start time.Time, timeout, lateLimit time.Duration, late func(time.Duration)) Round {
	if timeout <= 0 {
		timeout = p.Timeout
	}
	lateLimit = max(lateLimit, timeout)
	ctx, cancel := context.WithTimeout(ctx, lateLimit)
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
	r := Round{Seq: seq, Start: start, Sent: len(p.Targets) * n, PerTarget: make([]int, len(p.Targets))}
	best := make([]time.Duration, len(p.Targets))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	got := 0
collect:
	for got < r.Sent {
		var a answer
		select {
		case a = <-ch:
			got++
		case <-timer.C:
			break collect
		}
		if a.err != nil {
			if r.Err == nil && !errors.Is(a.err, context.DeadlineExceeded) && !errors.Is(a.err, context.Canceled) {
				r.Err = a.err
			}
			continue
		}
		r.Answered++
		r.PerTarget[a.target]++
		if best[a.target] == 0 || a.rtt < best[a.target] {
			best[a.target] = max(a.rtt, time.Nanosecond)
		}
	}
	if got < r.Sent {
		// The rest may still come, late: they prove the link alive.
		go func() {
			defer cancel()
			seen := false
			for ; got < r.Sent; got++ {
				if a := <-ch; a.err == nil && !seen && late != nil {
					seen = true // one sample per round
					late(a.rtt)
				}
			}
		}()
	} else {
		cancel()
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
	changed := lk.tr.round(r, now)
	if lk.tr.fails == 1 && lk.tr.state != StateOffline {
		lk.rxMark, _ = m.sys.rxPackets(lk.cfg.Interface)
	}
	switch {
	case changed:
		m.stateChanged(lk, prev, now)
	case m.sel.Fallback && lk.tr.state == StateOffline && (lk.tr.goods == 1 || (lk.tr.goods == 0 && lk.tr.fails == 1)):
		// No link is usable and this one starts or stops answering: it
		// may become, or stop being, the fallback.
		if err := m.reselect(now, lk.cfg.Name+" "+lk.tr.reason, false); err != nil {
			m.log.Error("uplink routes", "err", err)
		}
		m.updateWarnings()
	case lk.keep && lk.tr.state == StateOffline:
		m.checkKept(lk, now)
	}
	m.reportDamping(lk, now)
	m.reportSilent(lk, now)
}

// checkKept deletes the connections of an offline link kept for its
// traffic once it stops receiving any. m.mu is held.
func (m *Manager) checkKept(lk *link, now time.Time) {
	lk.keptRounds++
	if lk.keptRounds < lk.cfg.Probe.DownAfter {
		return
	}
	lk.keptRounds = 0
	rx, ok := m.sys.rxPackets(lk.cfg.Interface)
	n := rx - lk.rxMark
	lk.rxMark = rx
	if ok && n >= aliveRxPackets {
		return
	}
	lk.keep = false
	msg := fmt.Sprintf("%s stopped receiving traffic (%d packets in %d rounds): its connections are deleted", lk.cfg.Name, n, lk.cfg.Probe.DownAfter)
	m.events.add(Event{Time: now, Kind: EventState, Uplink: lk.cfg.Name, Message: msg})
	m.flush(lk)
}

// reportDamping logs a change of a link's flap damping. m.mu is held.
func (m *Manager) reportDamping(lk *link, now time.Time) {
	d := lk.tr.takeDamping()
	if d == "" {
		return
	}
	msg := lk.cfg.Name + " " + d
	m.events.add(Event{Time: now, Kind: EventDamping, Uplink: lk.cfg.Name, Message: msg})
	m.log.Warn("uplink flap damping", "event", "uplink-damping", "uplink", lk.cfg.Name, "hold", lk.tr.hold.String(), "flaps", lk.tr.flaps, "why", d)
	m.updateWarnings()
}

// reportSilent reports the probe targets of a link that stopped
// answering while others answer, and those that answer again. m.mu is
// held.
func (m *Manager) reportSilent(lk *link, now time.Time) {
	var names []string
	for _, a := range lk.tr.silentTargets() {
		names = append(names, a.String())
	}
	cur := strings.Join(names, ", ")
	if cur == lk.silent {
		return
	}
	lk.silent = cur
	code := "uplink-probe-target-silent:" + lk.cfg.Name
	if cur == "" {
		m.warn.Clear(code)
		m.events.add(Event{Time: now, Kind: EventTarget, Uplink: lk.cfg.Name, Message: fmt.Sprintf("every probe target of %s answers again", lk.cfg.Name)})
		m.log.Info("uplink probe targets answer", "event", "uplink-target-silent", "uplink", lk.cfg.Name, "targets", "")
		return
	}
	msg := fmt.Sprintf("probe target %s of %s does not answer while the others do: it is left out of the loss figure (filtered or down; check the uplink's probe targets)", cur, lk.cfg.Name)
	m.events.add(Event{Time: now, Kind: EventTarget, Uplink: lk.cfg.Name, Message: msg})
	m.warn.Raise("uplinks", code, health.Warn, "Uplink "+lk.cfg.Name+": "+msg+".")
	m.log.Warn("uplink probe target silent", "event", "uplink-target-silent", "uplink", lk.cfg.Name, "targets", cur)
}

// dnsCheckEvery: how often the DNS upstreams are asked through each
// uplink that is not a standby, and dnsRecheck after a failed check;
// dnsCheckTimeout: how long an answer is awaited. Each check sends
// dnsQueriesPerServer queries to every upstream, so that random loss
// almost never fails one, let alone dnsDownAfter in a row (5 % loss each
// way, one upstream: about one false verdict in 10^6 checks).
const (
	dnsCheckEvery       = time.Second
	dnsRecheck          = 200 * time.Millisecond
	dnsCheckTimeout     = 600 * time.Millisecond
	dnsQueriesPerServer = 2
)

// dnsLoop asks the DNS upstreams that follow the active uplink through
// this link: when none answers for dnsDownAfter checks in a row while
// the probes pass, the link is degraded (issue 13: an ISP that forwards
// everything but DNS), so new flows and the box's own DNS queries move
// to a link that carries DNS.
func (m *Manager) dnsLoop(ctx context.Context, lk *link, cfg Link, servers []netip.AddrPort) {
	wait, pref := dnsCheckEvery, -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = dnsCheckEvery
		// A standby link is not asked: its DNS matters once it may carry
		// traffic, and then every link runs at full rate. This keeps a
		// metered backup's cost to its probes.
		m.mu.Lock()
		skip := m.standby(lk) || !lk.tr.carrier || lk.tr.state == StateOffline
		m.mu.Unlock()
		if skip {
			continue
		}
		// The upstream that answered last is asked alone; after a failed
		// check, all are (one answer is enough). A link carrying traffic
		// thus pays two small queries a second, ~1 GB a month.
		ask := servers
		if pref >= 0 && pref < len(servers) {
			ask = servers[pref : pref+1]
		}
		i, why := checkDNS(ctx, m.sys, cfg, ask)
		if ctx.Err() != nil {
			return
		}
		ok := i >= 0
		switch {
		case !ok:
			pref = -1
			wait = dnsRecheck // confirm soon
			if len(ask) < len(servers) {
				wait = 0 // and ask the others at once
			}
		case len(ask) < len(servers):
			// pref stays
		default:
			pref = i
		}
		m.dnsDone(lk, ok, why)
	}
}

// checkDNS asks every server at once; one answer is enough. It returns
// the index of the server that answered, or -1 and why none did.
func checkDNS(ctx context.Context, sys system, cfg Link, servers []netip.AddrPort) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, dnsCheckTimeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	res := make(chan result, len(servers)*dnsQueriesPerServer)
	for i, s := range servers {
		for range dnsQueriesPerServer {
			go func() { res <- result{i, sys.checkDNS(ctx, cfg, s)} }()
		}
	}
	var first error
	for range cap(res) {
		r := <-res
		if r.err == nil {
			cancel()
			return r.i, ""
		}
		if first == nil {
			first = r.err
		}
	}
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.String()
	}
	why := fmt.Sprintf("no DNS upstream (%s) answered through it within %s", strings.Join(names, ", "), dnsCheckTimeout)
	if first != nil && !errors.Is(first, context.DeadlineExceeded) {
		why += ": " + first.Error()
	}
	return -1, why
}

// dnsDone feeds a DNS check to the link's tracker.
func (m *Manager) dnsDone(lk *link, ok bool, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.links[lk.cfg.Name] != lk {
		return
	}
	now := m.now()
	prev := lk.tr.state
	was := lk.tr.dnsBroken
	changed := lk.tr.dnsResult(ok, why, now)
	if was != lk.tr.dnsBroken {
		m.log.Warn("uplink dns check", "event", "uplink-dns", "uplink", lk.cfg.Name, "ok", !lk.tr.dnsBroken, "why", why)
	}
	if changed {
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
		if up && index != 0 {
			// The neighbour entry of the gateway went with the carrier;
			// resolve it now rather than when the first packet waits
			// for it (issue 13: up to 0.7 s after a total outage).
			if gw := lk.gateway(); gw.IsValid() {
				if err := m.sys.resolveGateway(ifname, gw); err != nil {
					m.log.Debug("gateway resolution", "uplink", lk.cfg.Name, "err", err)
				}
			}
		}
		prev := lk.tr.state
		if !up && lk.keep {
			lk.keep = false // a carrier loss is the end of any evidence
			if lk.tr.state == StateOffline {
				m.flush(lk)
			}
		}
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
		m.reportDamping(lk, now)
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
	lk.keep, lk.keptRounds = false, 0
	if st == StateOffline && lk.tr.carrier {
		// Offline by its probes: are they alone to fail?
		if rx, ok := m.sys.rxPackets(lk.cfg.Interface); ok && rx-lk.rxMark >= aliveRxPackets {
			lk.keep = true
			msg += fmt.Sprintf("; its connections are kept: it received %d packets while its probes failed, so only the probe targets may be unreachable", rx-lk.rxMark)
			lk.rxMark = rx
		}
	}
	m.events.add(Event{Time: now, Kind: EventState, Uplink: name, Message: msg})
	level := slog.LevelInfo
	if st == StateOffline || st == StateDegraded {
		level = slog.LevelWarn
	}
	m.log.Log(context.Background(), level, "uplink state", "event", "uplink-state", "uplink", name, "state", st.String(), "was", prev.String(), "why", lk.tr.reason, "connections_kept", lk.keep)
	changed, err := m.install(now, why, false)
	if err != nil {
		m.log.Error("uplink routes", "err", err)
	}
	for _, l := range m.plan.Links {
		// After a switch every offline link is flushed (see reselect);
		// without one, only the link that just died.
		if olk := m.links[l.Name]; m.dead(olk) && (changed || olk == lk) {
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
	var addr, was, gw string // "" when there is none
	if cur != nil {
		addr, gw = cur.Address.String(), cur.Gateway.String()
	}
	if oldAddr.IsValid() {
		was = oldAddr.String()
	}
	m.log.Info(msg, "event", "uplink-lease", "uplink", name, "address", addr, "was", was, "gateway", gw)
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
	var down []string // the preferred links not carrying new flows, and why
	for _, l := range m.plan.Links {
		lk := m.links[l.Name]
		if l.Priority == best && !m.sel.has(l.Index) {
			down = append(down, fmt.Sprintf("%s is %s (it %s)", l.Name, lk.tr.state, lk.tr.reason))
		}
		dcode := "uplink-degraded:" + l.Name
		if lk.tr.state == StateDegraded {
			m.warn.Raise("uplinks", dcode, health.Warn,
				fmt.Sprintf("Uplink %s is degraded since %s: it %s.", l.Name, lk.tr.since.Format("15:04:05"), lk.tr.reason))
		} else {
			m.warn.Clear(dcode)
		}
		hcode := "uplink-flapping:" + l.Name
		if lk.tr.hold > 0 {
			m.warn.Raise("uplinks", hcode, health.Warn,
				fmt.Sprintf("Uplink %s flaps (%d falls within a minute of each other): it carries new connections again only after %s without a fault.", l.Name, lk.tr.flaps+1, lk.tr.hold))
		} else {
			m.warn.Clear(hcode)
		}
		code := "uplink-offline:" + l.Name
		if lk.tr.state != StateOffline {
			m.warn.Clear(code)
			continue
		}
		offline++
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
			fmt.Sprintf("The school is on its backup link (%s) because %s.", strings.Join(names, ", "), strings.Join(down, "; ")))
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
	// HoldDown: how long the link must stay good before it carries new
	// connections again, because it flapped (0: not damped).
	HoldDown time.Duration
	// SilentTargets: probe targets that do not answer while others do.
	SilentTargets []netip.Addr
	// Standby: probed every standby_interval (a backup not in use).
	Standby bool
	// ConnectionsKept: offline by its probes, but its connections are
	// kept because it still receives traffic.
	ConnectionsKept bool
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
			HoldDown: lk.tr.hold, SilentTargets: lk.tr.silentTargets(), Standby: m.standby(lk), ConnectionsKept: lk.keep,
		}
		if lk.lease != nil {
			c := *lk.lease
			st.Lease = &c
		}
		out = append(out, st)
	}
	return out
}
