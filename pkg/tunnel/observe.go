package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"

	"passerelle/pkg/health"
	"passerelle/pkg/netmark"
)

// Warning codes.
const (
	warnDown        = "tunnel-down"
	warnUnavailable = "tunnel-unavailable"
	warnNotEnrolled = "tunnel-not-enrolled" // no auth key and no node in the state
	warnKeyInvalid  = "tunnel-key-invalid"  // the key file holds no usable key, or control refused it
)

// downGrace is how long a tunnel that was never up may take to come up
// before it is reported down (registration, first handshake).
const downGrace = time.Minute

// Path is how the box reaches the academy's router.
type Path string

const (
	PathNone      Path = ""
	PathDirect    Path = "direct"     // WireGuard over UDP between the sites
	PathRelayed   Path = "relayed"    // through the academy's DERP relay
	PathPeerRelay Path = "peer-relay" // through another node
)

// Snapshot is what tailscaled says about the tunnel, reduced to what the
// school and the NOC need.
type Snapshot struct {
	Backend       string       // tailscaled's backend state: Running, NeedsLogin, Starting...
	HaveNodeKey   bool         // the state holds a node: the box is enrolled
	Addrs         []netip.Addr // the box's own tailnet addresses
	Peers         int          // nodes in the tailnet map
	PeersOnline   int
	Academy       string         // host name of the node routing the academy prefixes
	AcademyIP     netip.Addr     // its tailnet address
	Routes        []netip.Prefix // the academy prefixes it routes
	Path          Path
	Endpoint      string // direct: the peer's ip:port
	Relay         string // DERP region in use or home region
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// Summarise reduces tailscaled's status. The academy's router is the peer
// whose primary routes overlap the academy prefixes (any peer with primary
// routes when none are configured).
func Summarise(st *ipnstate.Status, academy []netip.Prefix) Snapshot {
	s := Snapshot{Backend: st.BackendState, HaveNodeKey: st.HaveNodeKey, Addrs: slices.Clone(st.TailscaleIPs)}
	var best *ipnstate.PeerStatus
	var bestRoutes []netip.Prefix
	for _, p := range st.Peer {
		s.Peers++
		if p.Online {
			s.PeersOnline++
		}
		if p.PrimaryRoutes == nil {
			continue
		}
		var routes []netip.Prefix
		for _, r := range p.PrimaryRoutes.All() {
			if len(academy) == 0 || slices.ContainsFunc(academy, r.Overlaps) {
				routes = append(routes, r)
			}
		}
		if len(routes) > 0 && (best == nil || p.HostName < best.HostName) {
			best, bestRoutes = p, routes
		}
	}
	if best == nil {
		return s
	}
	s.Academy = best.HostName
	if len(best.TailscaleIPs) > 0 {
		s.AcademyIP = best.TailscaleIPs[0]
	}
	slices.SortFunc(bestRoutes, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	s.Routes = bestRoutes
	s.Endpoint, s.Relay = best.CurAddr, best.Relay
	switch {
	case best.CurAddr != "":
		s.Path = PathDirect
	case best.PeerRelay != "":
		s.Path = PathPeerRelay
	case best.Relay != "":
		s.Path = PathRelayed
	}
	s.LastHandshake = best.LastHandshake
	s.RxBytes, s.TxBytes = best.RxBytes, best.TxBytes
	return s
}

// Status is the tunnel as the status page shows it.
type Status struct {
	Snapshot
	Up       bool
	Reason   string        // why it is down, in plain words
	Since    time.Time     // when Up last changed
	RTT      time.Duration // last round trip to the academy's router
	Via      string        // the uplink tailscaled's traffic takes
	LastUpAt time.Time     // when it was last seen up
	LastVia  string        // the uplink it was last seen up through
	// Enrolment: whether the box is a node of the tailnet, or why it
	// cannot become one (Enrolment.Problem), in words in EnrolReason;
	// KeyFile is the auth key file.
	Enrolment   Enrolment
	EnrolReason string
	KeyFile     string
}

// observer is Run's memory between polls; guarded by Tunnel.mu.
type observer struct {
	st        Status
	started   time.Time
	everUp    bool
	bypass    int // table of the bypass rule
	lastPing  time.Time
	pingFails int
	inTailnet bool       // tailscaled's last answer: Running, a node of the tailnet
	login     loginState // from the IPN bus
	enrol     Enrolment  // last logged
	lastKey   time.Time  // last check of the auth key file
}

// Status returns the tunnel's last observed state.
func (t *Tunnel) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.obs.st
}

// Run observes tailscaled until ctx is done, and keeps tailscaled's own
// traffic on the preferred uplink.
func (t *Tunnel) Run(ctx context.Context) error {
	t.mu.Lock()
	t.obs.started = t.now()
	t.mu.Unlock()
	// The uplink is followed on its own, faster clock: a Status call can
	// take seconds, and every 100 ms the tunnel stays on a dead uplink is
	// 100 ms more of the academy out of reach.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { t.follow(ctx) })
	wg.Go(func() { t.watchLogin(ctx) })
	tick := time.NewTicker(t.opts.Poll)
	defer tick.Stop()
	for {
		if now := t.now(); now.Sub(t.obs.lastKey) >= t.opts.KeyEvery {
			t.obs.lastKey = now // only Run's loop reads and writes it
			t.recheckKey(ctx)
		}
		t.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// poll is one observation.
func (t *Tunnel) poll(ctx context.Context) {
	t.mu.Lock()
	p, running := t.plan, t.running
	t.mu.Unlock()
	if p == nil || !p.Enabled || !running {
		return
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, err := t.Client().Status(cctx)
	cancel()
	now := t.now()
	var snap Snapshot
	up, reason := false, ""
	enrol, why := EnrolUnknown, ""
	if err != nil {
		reason = "tailscaled not answering"
	} else {
		snap = Summarise(st, p.AcademyPrefixes)
		t.mu.Lock()
		t.obs.inTailnet = snap.Backend == "Running"
		login := t.obs.login
		enrol, why = enrolment(snap, t.key, login)
		t.mu.Unlock()
		switch {
		case enrol != EnrolEnrolled:
			reason = why
		case snap.Backend != "Running" && login.refused:
			reason = "the academy's control server refuses the box's login (" + login.err + "): its node may have expired or been deleted there"
		case snap.Backend != "Running" && login.err != "":
			reason = "the academy's control server cannot be reached (" + login.err + ")"
		case snap.Backend != "Running":
			reason = "tailscaled " + strings.ToLower(snap.Backend)
			if snap.Backend == "NeedsLogin" {
				reason = "the academy's control server asks the box to log in again (its node expired or was deleted there)"
			}
		case !snap.AcademyIP.IsValid():
			reason = "no route to the academy in the tailnet"
		default:
			up, reason = t.ping(ctx, snap, now)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	o := &t.obs
	prev := o.st
	o.st.Snapshot = snap
	o.st.Via = t.via(p, o.bypass)
	o.st.KeyFile = p.AuthKeyFile
	if enrol != EnrolUnknown {
		// tailscaled not answering (restarting with a new key) leaves the
		// enrolment as it was: no warning cleared and raised again.
		o.st.Enrolment, o.st.EnrolReason = enrol, why
	}
	t.enrolChanged(enrol, reason, p.AuthKeyFile)
	if up {
		o.st.LastUpAt, o.st.LastVia = now, o.st.Via
	}
	if up != prev.Up || reason != prev.Reason || o.st.Since.IsZero() {
		o.st.Up, o.st.Reason = up, reason
		if up != prev.Up || o.st.Since.IsZero() {
			o.st.Since = now
		}
		t.stateChanged(prev, now)
	} else if up && snap.Path != prev.Path {
		t.log.Info(fmt.Sprintf("tunnel to the academy now %s", pathWords(snap)), "event", "tunnel-path",
			"path", string(snap.Path), "endpoint", snap.Endpoint, "relay", snap.Relay, "via", o.st.Via)
	}
	t.warn(now)
	t.m.set(o.st)
}

// ping measures the round trip to the academy's router (disco ping: it
// answers even when nothing else crosses the tunnel). Between pings the
// last result stands.
func (t *Tunnel) ping(ctx context.Context, snap Snapshot, now time.Time) (bool, string) {
	t.mu.Lock()
	due := now.Sub(t.obs.lastPing) >= t.opts.PingEvery || !t.obs.st.Up
	fails := t.obs.pingFails
	t.mu.Unlock()
	if due {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := t.Client().Ping(cctx, snap.AcademyIP, tailcfg.PingDisco)
		cancel()
		t.mu.Lock()
		t.obs.lastPing = now
		if err != nil || res.Err != "" {
			t.obs.pingFails++
		} else {
			t.obs.pingFails = 0
			t.obs.st.RTT = time.Duration(res.LatencySeconds * float64(time.Second))
		}
		fails = t.obs.pingFails
		t.mu.Unlock()
	}
	// One lost ping is not an outage.
	if fails >= 2 {
		return false, "the academy's router does not answer"
	}
	t.mu.Lock()
	wasUp := t.obs.st.Up
	t.mu.Unlock()
	if fails == 1 && !wasUp {
		return false, "the academy's router does not answer"
	}
	return true, ""
}

func pathWords(s Snapshot) string {
	switch s.Path {
	case PathDirect:
		return "direct (" + s.Endpoint + ")"
	case PathRelayed:
		return "relayed through the academy's relay (" + s.Relay + ")"
	case PathPeerRelay:
		return "relayed through another node"
	}
	return "on an unknown path"
}

// stateChanged logs the change from prev to the current state; t.mu held.
func (t *Tunnel) stateChanged(prev Status, now time.Time) {
	st := t.obs.st
	if st.Up {
		t.obs.everUp = true
		msg := "tunnel to the academy up, " + pathWords(st.Snapshot) + ", through " + st.Via
		if !prev.Since.IsZero() && !prev.Up {
			msg += fmt.Sprintf(" (down for %s)", now.Sub(prev.Since).Round(time.Second))
		}
		t.log.Info(msg, "event", "tunnel-state", "state", "up", "path", string(st.Path),
			"peer", st.Academy, "endpoint", st.Endpoint, "relay", st.Relay, "via", st.Via,
			"addrs", fmt.Sprint(st.Addrs), "routes", prefixes(st.Routes))
		return
	}
	t.log.Warn("tunnel to the academy down: "+st.Reason, "event", "tunnel-state", "state", "down",
		"reason", st.Reason, "backend", st.Backend, "via", st.Via)
}

// warn keeps the tunnel's warnings; t.mu held.
func (t *Tunnel) warn(now time.Time) {
	st := t.obs.st
	if t.warnEnrolment() || st.Up {
		t.health.Clear(warnDown)
		return
	}
	if !t.obs.everUp && now.Sub(t.obs.started) < downGrace {
		return
	}
	msg := fmt.Sprintf("The tunnel to the academy has been down since %s (%s)", st.Since.Format("15:04"), st.Reason)
	if !st.LastUpAt.IsZero() {
		msg += ", last seen through " + st.LastVia
	} else {
		msg += "; it has not come up since the box started"
	}
	t.health.Raise("tunnel", warnDown, health.Critical, msg+". The school's administrative services at the academy are unreachable.")
}

// followEvery is how often the uplink of tailscaled's traffic is checked
// (an in-memory question to the uplink manager).
const followEvery = 100 * time.Millisecond

// follow keeps tailscaled's own traffic on the right uplink until ctx is
// done.
func (t *Tunnel) follow(ctx context.Context) {
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		t.mu.Lock()
		p, running := t.plan, t.running
		t.mu.Unlock()
		if p != nil && p.Enabled && running {
			if table, moved := t.followUplink(p); moved {
				t.refresh(ctx, p, table)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refresh tells tailscaled that its traffic changed uplinks.
//
// Leaving the preferred uplink (a failover) restarts it. The academy's
// tailscaled keeps answering to the address it trusts (6.5 s after its last
// answer, magicsock's trustUDPAddrDuration) and forgets it at once only
// when the box's call-me-maybe no longer lists it; a running tailscaled
// lists every endpoint STUN found in the last 5 minutes (magicsock's
// endpointTracker, which nothing resets), so the dead uplink's address
// stayed listed and the tunnel was down 5-6 s after a carrier loss. A new
// tailscaled lists only what STUN finds through the backup: the tunnel is
// back within a few hundred milliseconds in the lab (docs/benchmarks.md).
//
// Coming back to the preferred uplink, nothing is broken: a rebind (pings
// on every path at once) moves the box's side without a gap. The academy
// answers through the backup's address until that path is worse or
// forgotten (minutes), which costs the backup link's volume, not the
// school's connectivity.
func (t *Tunnel) refresh(ctx context.Context, p *Plan, table int) {
	if table == netmark.TableActive && p.PreferUplink != "" {
		since := t.now()
		err := t.opts.Supervisor.Restart(ServiceName)
		if err == nil {
			t.log.Info("tailscaled restarted so that the academy forgets "+p.PreferUplink+"'s address", "event", "tunnel-restart", "why", "failover")
			go t.handshakeAfterRestart(ctx, p, since)
			return
		}
		t.log.Warn("tailscaled not restarted after the failover: the tunnel may take seconds longer to come back", "err", err)
	}
	t.rebind(ctx)
	t.log.Debug("tailscaled told to rebind")
}

// handshakeSettle is how long after a failover restart the academy has
// had to take the box's call-me-maybe (sent once STUN has answered
// through the backup, a round trip through the relay later).
const handshakeSettle = 500 * time.Millisecond

// handshakeAfterRestart makes sure the new tailscaled's WireGuard session
// with the academy does not wait 5 s for its first retry. The new process
// sends its first handshake as soon as traffic for the academy arrives,
// before its call-me-maybe has made the academy forget Renater's address:
// the academy answers to that address, the answer is lost, and WireGuard
// tries again only after its rekey timeout (5 s; seen in the lab with a
// busy tunnel). If there is no handshake once the call-me-maybe has had
// time to land, stopping and starting the engine (WantRunning off and on,
// EditPrefs) starts a new session at once, answered through the relay or
// the backup.
func (t *Tunnel) handshakeAfterRestart(ctx context.Context, p *Plan, since time.Time) {
	ctx, cancel := context.WithTimeout(ctx, handshakeWithin)
	defer cancel()
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if t.now().Sub(since) < handshakeSettle {
			continue
		}
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		st, err := t.Client().Status(sctx)
		scancel()
		if err != nil || st.BackendState != "Running" || st.Self == nil || len(st.Self.Addrs) == 0 {
			continue // not up yet, or STUN has not answered: no call-me-maybe sent
		}
		snap := Summarise(st, p.AcademyPrefixes)
		if snap.Academy == "" {
			continue
		}
		if snap.LastHandshake.After(since) {
			return
		}
		if err := t.restartEngine(ctx); err != nil {
			// The engine may be left off (WantRunning false): only a new
			// tailscaled, which starts from its config file, is sure to run.
			t.log.Warn("tailscaled's WireGuard session not restarted: restarting tailscaled", "err", err)
			if err := t.opts.Supervisor.Restart(ServiceName); err != nil {
				t.log.Error("tailscaled not restarted: the tunnel may stay down until the next change", "err", err)
			}
			return
		}
		t.log.Info("no WireGuard handshake with the academy since the restart: new session started", "event", "tunnel-handshake-retry",
			"after", t.now().Sub(since))
		return
	}
}

// handshakeWithin bounds handshakeAfterRestart.
const handshakeWithin = 10 * time.Second

// restartEngine stops and starts tailscaled's engine, which drops its
// WireGuard sessions; the next packet for a peer starts a new handshake.
func (t *Tunnel) restartEngine(ctx context.Context) error {
	for _, run := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := t.Client().EditPrefs(ctx, &ipn.MaskedPrefs{Prefs: ipn.Prefs{WantRunning: run}, WantRunningSet: true})
		cancel()
		if err != nil {
			return fmt.Errorf("want running %v: %w", run, err)
		}
	}
	return nil
}

// rebind tells tailscaled to forget its paths to peers and ping them at
// once on every path, through the relay too: the peer learns the box's new
// address from those pings.
func (t *Tunnel) rebind(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := t.Client().DebugAction(ctx, "rebind"); err != nil {
		t.log.Warn("tailscaled not told to rebind after the uplink change: the tunnel may take seconds longer to come back", "err", err)
	}
}

// followUplink points tailscaled's own traffic at the preferred uplink
// while it is usable, else at the uplink of new flows. It reports the
// bypass table and whether the traffic moved from one uplink to another.
func (t *Tunnel) followUplink(p *Plan) (int, bool) {
	table := t.bypassTable(p)
	t.mu.Lock()
	cur := t.obs.bypass
	t.mu.Unlock()
	if table == cur {
		return table, false
	}
	if err := setBypass(table); err != nil {
		t.log.Error("tailscaled's traffic not moved", "err", err)
		return cur, false
	}
	t.mu.Lock()
	t.obs.bypass = table
	t.mu.Unlock()
	if cur != 0 {
		t.log.Info("tunnel traffic now through "+t.via(p, table), "event", "tunnel-uplink", "via", t.via(p, table), "table", table)
	}
	return table, cur != 0
}

type metrics struct {
	up, peers, rtt, rx, tx, handshake prometheus.Gauge
	path                              *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_tunnel_" + name, Help: help})
	}
	m := &metrics{
		up:        g("up", "1 while the academy's router answers through the tunnel."),
		peers:     g("peers", "Nodes of the tailnet the box knows."),
		rtt:       g("rtt_seconds", "Last round trip to the academy's router (disco ping)."),
		rx:        g("receive_bytes", "Bytes received from the academy's router since tailscaled started."),
		tx:        g("transmit_bytes", "Bytes sent to the academy's router since tailscaled started."),
		handshake: g("last_handshake_timestamp_seconds", "Last WireGuard handshake with the academy's router."),
		path: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "passerelle_tunnel_path", Help: "1 for the path to the academy in use: direct, relayed or peer-relay.",
		}, []string{"path"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.peers, m.rtt, m.rx, m.tx, m.handshake, m.path} {
		_ = reg.Register(c) // a second tunnel in one registry (tests) keeps the first's
	}
	return m
}

func (m *metrics) set(st Status) {
	b := 0.0
	if st.Up {
		b = 1
	}
	m.up.Set(b)
	m.peers.Set(float64(st.Peers))
	m.rtt.Set(st.RTT.Seconds())
	m.rx.Set(float64(st.RxBytes))
	m.tx.Set(float64(st.TxBytes))
	if !st.LastHandshake.IsZero() {
		m.handshake.Set(float64(st.LastHandshake.Unix()))
	}
	for _, p := range []Path{PathDirect, PathRelayed, PathPeerRelay} {
		v := 0.0
		if st.Up && st.Path == p {
			v = 1
		}
		m.path.WithLabelValues(string(p)).Set(v)
	}
}
