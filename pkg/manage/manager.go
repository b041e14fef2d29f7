package manage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/nocsig"
)

// Structured events of the daemon's log ("event" attribute), which the
// system tests wait on.
const (
	EvBundleRejected   = "bundle-rejected"    // source, reason, detail
	EvBundlePending    = "bundle-pending"     // source, version, gen, deadline
	EvBundleCommitted  = "bundle-committed"   // version, gen
	EvBundleRolledBack = "bundle-rolled-back" // version, gen, reason, detail
)

// Rollback reasons (the "reason" of bundle-rolled-back).
const (
	RollbackGate    = "health-gate"   // the gate did not pass within the window
	RollbackApply   = "apply-failed"  // the box could not apply it
	RollbackRestart = "restart"       // the box stopped in order (reboot, power off, daemon stop) inside the window
	RollbackCrash   = "crash"         // the box stopped without an orderly shutdown (crash, kill, power cut, watchdog) inside the window
	RollbackBadBoot = "boot-unusable" // the stored generation did not parse at boot
	// RollbackTechnician: asked for on the status page (RollBack).
	RollbackTechnician = "technician"
)

// Submitter is the daemon's one path by which a configuration becomes the
// running one (cmd/passerelle's submit): the box applies it whole or
// restores the previous one.
type Submitter interface {
	Submit(ctx context.Context, cfg *config.Config, source string) error
}

// Probe is one check of the health gate. Before, if set, runs just before
// the new configuration is applied (old is the running one); what it
// returns is handed to every Check. Check runs repeatedly after the
// apply, and returns why it does not pass.
type Probe struct {
	Name   string
	Before func(old, cur *config.Config) any
	Check  func(ctx context.Context, cfg *config.Config, before any) error
}

// Options shape a Manager.
type Options struct {
	Dir       string // generations directory; default DefaultDir
	Submitter Submitter
	Probes    []Probe
	// Confirm overrides management.confirm_timeout (the lab's short
	// windows); 0: the configuration's.
	Confirm time.Duration
	// Hold is how long the gate must pass without a break before the
	// generation is committed; 0: a third of the window, at most 30 s.
	Hold time.Duration
	// Every is the time between gate rounds; 0: 500 ms.
	Every time.Duration
	// PullEvery overrides management.pull_interval (the lab); 0: the
	// configuration's.
	PullEvery time.Duration
	// Dial, if set, makes the pull client's connections (pinned to an
	// uplink or through the tunnel; cmd/passerelle decides).
	Dial DialFunc
}

// Manager checks bundles, keeps the generations and runs the gate.
type Manager struct {
	log    *slog.Logger
	health *health.Registry
	now    func() time.Time
	o      Options
	store  *Store
	met    *metrics

	ctx    context.Context // of the confirm windows; ends with Close
	cancel context.CancelFunc

	mu      sync.Mutex // one bundle at a time
	running *config.Config
	text    []byte
	pending *window
	done    map[int]chan Result // results of generations in their window
	pull    pullState
}

// window is a generation inside its confirm window.
type window struct {
	gen  Generation
	prev int
	cfg  *config.Config
}

// New opens the generations store.
func New(d box.Deps, o Options) (*Manager, error) {
	d = d.For("manage")
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Every == 0 {
		o.Every = 500 * time.Millisecond
	}
	s, err := OpenStore(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("manage: %w", err)
	}
	met, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{log: d.Log, health: d.Health, now: d.Now, o: o, store: s, met: met, ctx: ctx, cancel: cancel,
		done: map[int]chan Result{}}
	if st, err := s.State(); err == nil {
		met.setState(st, 0)
	}
	return m, nil
}

// Close ends the confirm window in progress without deciding: the
// pending marker stays on /perm and the next boot rolls back.
func (m *Manager) Close() { m.cancel() }

// Stop is Close for an orderly shutdown (how: reboot, power off, exit):
// a generation inside its window is neither committed nor rolled back
// now (the box is going down; the next boot rolls back), and the
// pending marker records how the box stopped, so the rollback at boot
// tells an orderly restart from a crash or a power cut.
func (m *Manager) Stop(how string) {
	m.cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.store.State()
	if err != nil || st.Pending == nil {
		return
	}
	st.Pending.Stopped, st.Pending.StoppedAt = how, m.now()
	if err := m.store.SetState(st); err != nil {
		m.log.Error("could not note the shutdown in the pending marker", "err", err)
		return
	}
	m.log.Warn("stopping inside a confirm window: the next boot rolls back", "gen", st.Pending.Gen, "how", how)
}

// Store is the generations store (status, the API).
func (m *Manager) Store() *Store { return m.store }

// Boot says which configuration the box starts with: the file, unless a
// bundle was committed since; a generation left pending by a restart or a
// crash inside its window is rolled back here, before anything runs.
// It returns the document and the name to parse it under.
func (m *Manager) Boot(fileText []byte, fileName string) ([]byte, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.store.State()
	if err != nil {
		m.log.Error("generations unreadable; starting from the configuration file", "err", err)
		return fileText, fileName
	}
	if p := st.Pending; p != nil {
		reason, why := bootRollback(p)
		g, err := m.store.Get(p.Gen)
		if err == nil {
			g.State, g.Why = StateRolledBack, reason+": "+why
			_ = m.store.Put(g)
		}
		st.Current, st.Pending = p.Prev, nil
		if err := m.store.SetState(st); err != nil {
			m.log.Error("could not clear the pending marker", "err", err)
		}
		r := Result{At: m.now(), Source: g.Source, UAI: "", Version: g.Version, KeyID: g.KeyID, Outcome: OutcomeRolledBack,
			Reason: reason, Detail: why, Gen: p.Gen}
		m.record(r)
		m.log.Warn("configuration of the last bundle rolled back: the box stopped inside its confirm window",
			"event", EvBundleRolledBack, "gen", p.Gen, "version", g.Version, "reason", reason, "detail", why, "booting", p.Prev)
		m.health.Raise("manage", "config-rolled-back", health.Warn,
			fmt.Sprintf("The NOC's configuration version %d was rolled back (%s): %s.", g.Version, reason, why))
	}
	m.met.setState(st, 0)
	if st.Current == 0 {
		return fileText, fileName
	}
	g, err := m.store.Get(st.Current)
	if err != nil {
		m.log.Error("current generation unreadable; starting from the configuration file", "gen", st.Current, "err", err)
		return fileText, fileName
	}
	m.log.Info("starting from the last committed generation", "gen", g.N, "version", g.Version, "name", g.Name)
	return []byte(g.Config), g.Name
}

// bootRollback says why a generation found pending at boot is rolled
// back: an orderly stop inside the window (Stop noted how) or none.
func bootRollback(p *Pending) (reason, why string) {
	if p.Stopped != "" {
		return RollbackRestart, fmt.Sprintf("the box stopped in order (%s) at %s, inside the confirm window",
			p.Stopped, p.StoppedAt.UTC().Format(time.RFC3339))
	}
	return RollbackCrash, "the box stopped without an orderly shutdown (crash, power cut or watchdog) inside the confirm window"
}

// Running tells the manager which configuration the box runs now (after
// the start-up apply and each SIGHUP): its keys are the trusted ones.
func (m *Manager) Running(cfg *config.Config, text []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running, m.text = cfg, text
}

func (m *Manager) confirmWindow(cfg *config.Config) time.Duration {
	if m.o.Confirm > 0 {
		return m.o.Confirm
	}
	return cfg.Management.ConfirmTimeout.D()
}

func (m *Manager) hold(win time.Duration) time.Duration {
	if m.o.Hold > 0 {
		return m.o.Hold
	}
	return min(win/3, 30*time.Second)
}

// trust is the running configuration's keys, UAI and highest version.
func (m *Manager) trust(st State) Trust {
	t := Trust{Keys: nocsig.Keys{}, Highest: st.Highest, Now: m.now()}
	if m.running != nil {
		t.UAI = m.running.Identity.UAI
		t.Keys = nocsig.FromConfig(m.running.Management.TrustedKeys)
	}
	return t
}

// Handle checks one bundle and, if it passes, applies it as a pending
// generation whose confirm window then runs in the background. The
// result is pending (then Wait), or rejected / rolled back.
func (m *Manager) Handle(ctx context.Context, data []byte, source string) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	res := Result{At: m.now(), Source: source}
	fail := func(rj *Rejection) Result { return m.rejected(res, rj) }
	if m.running == nil {
		return fail(reject(ReasonBusy, "the box has no running configuration yet"))
	}
	if m.pending != nil {
		return fail(reject(ReasonBusy, "generation %d (version %d) is inside its confirm window", m.pending.gen.N, m.pending.gen.Version))
	}
	st, err := m.store.State()
	if err != nil {
		return fail(reject(ReasonBusy, "generations unreadable: %v", err))
	}
	p, signer, err := Open(data, m.trust(st))
	if err != nil {
		rj, _ := asRejection(err)
		return fail(rj)
	}
	res.UAI, res.Version, res.KeyID = p.UAI, p.Version, signer
	cfg, err := config.Parse(p.Name, []byte(p.Config))
	if err != nil {
		return fail(reject(ReasonConfigInvalid, "%v", err))
	}
	if cfg.Identity.UAI != p.UAI {
		return fail(reject(ReasonConfigInvalid, "%s: identity.uai: %s, but the bundle is for %s", p.Name, cfg.Identity.UAI, p.UAI))
	}
	if len(cfg.Management.TrustedKeys) == 0 {
		return fail(reject(ReasonConfigInvalid, "%s: management.trusted_keys: empty; the NOC could never reach this box again", p.Name))
	}

	// The base: what the box runs now becomes a generation, so there is
	// always one to return to.
	if st.Current == 0 {
		base := Generation{N: m.store.Last() + 1, State: StateBase, Source: "base", AppliedAt: m.now(),
			Name: "base.yaml", Config: string(m.text)}
		if err := m.store.Put(base); err != nil {
			return fail(reject(ReasonBusy, "cannot write generations: %v", err))
		}
		st.Current = base.N
	}
	win := m.confirmWindow(cfg)
	g := Generation{N: max(m.store.Last(), st.Current) + 1, Version: p.Version, State: StatePending, Source: source, KeyID: signer,
		SignedAt: p.SignedAt, AppliedAt: m.now(), Name: p.Name, Config: p.Config}
	if err := m.store.Put(g); err != nil {
		return fail(reject(ReasonBusy, "cannot write generation %d: %v", g.N, err))
	}
	deadline := m.now().Add(win)
	prev := st.Current
	st.Highest, st.Pending = p.Version, &Pending{Gen: g.N, Prev: prev, Deadline: deadline}
	if err := m.store.SetState(st); err != nil {
		return fail(reject(ReasonBusy, "cannot write the pending marker: %v", err))
	}
	m.met.setState(st, 1)
	befores := make([]any, len(m.o.Probes))
	for i, pr := range m.o.Probes {
		if pr.Before != nil {
			befores[i] = pr.Before(m.running, cfg)
		}
	}
	m.log.Info("bundle accepted; applying it as a pending generation", "event", EvBundlePending, "source", source,
		"version", p.Version, "gen", g.N, "key", signer, "deadline", deadline.Format(time.RFC3339))
	res.Gen = g.N
	w := &window{gen: g, prev: prev, cfg: cfg}
	m.pending = w
	m.done[g.N] = make(chan Result, 1)
	if err := m.o.Submitter.Submit(ctx, cfg, "bundle-"+source); err != nil {
		return m.rollback(w, RollbackApply, err.Error())
	}
	go m.gate(w, win, befores)
	res.Outcome = OutcomePending
	return res
}

// Wait returns the final result of generation gen (committed or rolled
// back), or the last kept result for it when its window is over.
func (m *Manager) Wait(ctx context.Context, gen int) (Result, error) {
	m.mu.Lock()
	ch := m.done[gen]
	m.mu.Unlock()
	if ch != nil {
		select {
		case r := <-ch:
			ch <- r // for other waiters
			return r, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	rs, err := m.store.Results()
	if err != nil {
		return Result{}, err
	}
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Gen == gen && rs[i].Outcome != OutcomePending {
			return rs[i], nil
		}
	}
	return Result{}, fmt.Errorf("no result for generation %d", gen)
}

// neverRan is the rollback's detail when no gate round ended in time.
const neverRan = "the health gate never ran"

// gate runs the probes until they all pass for the hold time (commit)
// or the window ends (rollback).
func (m *Manager) gate(w *window, win time.Duration, befores []any) {
	why, err := RunGate(m.ctx, GateOptions{Probes: m.o.Probes, Window: win, Hold: m.hold(win), Every: m.o.Every, Now: m.now,
		Log: m.log.With("gen", w.gen.N), Undecided: func() bool { return m.stillPending(w) }}, w.cfg, befores)
	if err != nil {
		// Closed: the pending marker stays, the next boot rolls back;
		// or decided by the technician (Confirm, RollBack).
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Not after Stop: the box is going down and the boot decides.
	if m.pending != w || m.ctx.Err() != nil {
		return
	}
	if why == "" {
		m.commit(w)
	} else {
		m.rollback(w, RollbackGate, why)
	}
}

// commit makes w the current generation. m.mu is held.
func (m *Manager) commit(w *window) {
	st, err := m.store.State()
	if err != nil {
		m.log.Error("generations unreadable at commit", "err", err)
	}
	w.gen.State = StateCommitted
	if err := m.store.Put(w.gen); err != nil {
		m.log.Error("could not write the committed generation", "gen", w.gen.N, "err", err)
	}
	st.Current, st.Pending = w.gen.N, nil
	if err := m.store.SetState(st); err != nil {
		m.log.Error("could not commit", "gen", w.gen.N, "err", err)
	}
	if err := m.store.Prune(st.Current, w.prev); err != nil {
		m.log.Warn("could not prune old generations", "err", err)
	}
	m.running, m.text = w.cfg, []byte(w.gen.Config)
	m.pending = nil
	m.met.setState(st, 0)
	m.health.Clear("config-rolled-back")
	r := Result{At: m.now(), Source: w.gen.Source, UAI: w.cfg.Identity.UAI, Version: w.gen.Version, KeyID: w.gen.KeyID,
		Outcome: OutcomeCommitted, Gen: w.gen.N}
	m.record(r)
	m.finish(w.gen.N, r)
	m.log.Info("configuration committed: the health gate passed", "event", EvBundleCommitted, "version", w.gen.Version, "gen", w.gen.N)
}

// rollback restores generation w.prev through the submit path. m.mu is
// held.
func (m *Manager) rollback(w *window, reason, why string) Result {
	prev, err := m.store.Get(w.prev)
	var cfg *config.Config
	if err == nil {
		cfg, err = config.Parse(prev.Name, []byte(prev.Config))
	}
	if err != nil {
		err = fmt.Errorf("generation %d unusable: %w", w.prev, err)
	} else {
		err = m.o.Submitter.Submit(m.ctx, cfg, "rollback")
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		m.log.Error("rollback failed", "gen", w.prev, "err", err)
		m.health.Raise("manage", "config-rollback-failed", health.Critical,
			fmt.Sprintf("The box could not return to its previous configuration (generation %d): %v", w.prev, err))
	}
	st, _ := m.store.State()
	w.gen.State, w.gen.Why = StateRolledBack, reason+": "+why
	_ = m.store.Put(w.gen)
	st.Current, st.Pending = w.prev, nil
	if err := m.store.SetState(st); err != nil {
		m.log.Error("could not clear the pending marker", "err", err)
	}
	if cfg != nil {
		m.running, m.text = cfg, []byte(prev.Config)
	}
	m.pending = nil
	m.met.setState(st, 0)
	m.health.Raise("manage", "config-rolled-back", health.Warn,
		fmt.Sprintf("The NOC's configuration version %d was rolled back (%s): %s", w.gen.Version, reason, why))
	r := Result{At: m.now(), Source: w.gen.Source, UAI: w.cfg.Identity.UAI, Version: w.gen.Version, KeyID: w.gen.KeyID,
		Outcome: OutcomeRolledBack, Reason: reason, Detail: why, Gen: w.gen.N}
	m.record(r)
	m.finish(w.gen.N, r)
	m.log.Warn("configuration rolled back", "event", EvBundleRolledBack, "version", w.gen.Version, "gen", w.gen.N,
		"reason", reason, "detail", why, "restored", w.prev)
	return r
}

func (m *Manager) finish(gen int, r Result) {
	if ch := m.done[gen]; ch != nil {
		ch <- r
		delete(m.done, gen)
	}
}

// Reject records a bundle refused before it could be read whole (too
// large): logged, counted and kept like every refusal; nothing else
// changes.
func (m *Manager) Reject(source string, rj *Rejection) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rejected(Result{At: m.now(), Source: source}, rj)
}

// rejected records res refused for rj. m.mu is held.
func (m *Manager) rejected(res Result, rj *Rejection) Result {
	res.Outcome, res.Reason, res.Detail = OutcomeRejected, string(rj.Reason), rj.Detail
	m.record(res)
	m.log.Error("bundle rejected", "event", EvBundleRejected, "source", res.Source, "reason", string(rj.Reason),
		"detail", rj.Detail, "version", res.Version)
	return res
}

// record keeps a result on /perm and counts it.
func (m *Manager) record(r Result) {
	m.met.count(r)
	if err := m.store.AddResult(r); err != nil {
		m.log.Error("could not keep the bundle's result", "err", err)
	}
}

// Status is the box's management state for the NOC.
type Status struct {
	UAI        string    `json:"uai"`
	Version    uint64    `json:"version"` // of the current generation (0: the base file)
	Generation int       `json:"generation"`
	Highest    uint64    `json:"highest"`
	Pending    *Pending  `json:"pending,omitempty"`
	Health     []string  `json:"health,omitempty"` // warnings: "severity code: message"
	Last       *Result   `json:"last,omitempty"`
	At         time.Time `json:"at"`
}

// Status reports the current generation, the pending one and the health.
func (m *Manager) Status() Status {
	m.mu.Lock()
	var uai string
	if m.running != nil {
		uai = m.running.Identity.UAI
	}
	m.mu.Unlock()
	st, _ := m.store.State()
	s := Status{UAI: uai, Generation: st.Current, Highest: st.Highest, Pending: st.Pending, At: m.now()}
	if g, err := m.store.Get(st.Current); err == nil {
		s.Version = g.Version
	}
	for _, w := range m.health.List() {
		s.Health = append(s.Health, w.Severity.String()+" "+w.Code+": "+w.Message)
	}
	if rs, _ := m.store.Results(); len(rs) > 0 {
		s.Last = &rs[len(rs)-1]
	}
	return s
}

type metrics struct {
	bundles    *prometheus.CounterVec
	generation prometheus.Gauge
	highest    prometheus.Gauge
	pending    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bundles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_manage_bundles_total",
			Help: "Bundles received, by outcome (rejected, pending, committed, rolled-back) and reason."}, []string{"outcome", "reason"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_manage_generation", Help: "Current committed generation (0: the configuration file)."}),
		highest:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_manage_version", Help: "Highest bundle version accepted."}),
		pending:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_manage_pending", Help: "1 while a generation is inside its confirm window."}),
	}
	for _, c := range []prometheus.Collector{m.bundles, m.generation, m.highest, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("manage metrics: %w", err)
		}
	}
	for _, r := range Reasons {
		m.bundles.WithLabelValues(OutcomeRejected, string(r))
	}
	m.bundles.WithLabelValues(OutcomeCommitted, "")
	for _, r := range []string{RollbackGate, RollbackApply, RollbackRestart, RollbackCrash} {
		m.bundles.WithLabelValues(OutcomeRolledBack, r)
	}
	return m, nil
}

func (m *metrics) count(r Result) { m.bundles.WithLabelValues(r.Outcome, r.Reason).Inc() }

func (m *metrics) setState(st State, pending float64) {
	m.generation.Set(float64(st.Current))
	m.highest.Set(float64(st.Highest))
	m.pending.Set(pending)
}

// SetProbes sets the health gate's probes (before the first bundle: the
// daemon builds some of them from the manager itself).
func (m *Manager) SetProbes(ps []Probe) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.o.Probes = ps
}

// Config is the running configuration as the manager knows it.
func (m *Manager) Config() *config.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// isTimeout reports whether err is a probe stopped by its deadline.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		strings.Contains(err.Error(), "does not answer") || strings.Contains(err.Error(), "i/o timeout")
}
