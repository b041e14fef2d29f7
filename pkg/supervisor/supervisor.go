// Package supervisor runs the box's long-running work: internal services
// (goroutines: the DNS server, probe loops) and external children
// (tailscaled). Services start in the order they were added, each waiting
// for the previous one to be ready; a service that exits is restarted
// with exponential backoff, one that keeps exiting is marked failed,
// reported and retried rarely; stopping goes in reverse order with a
// deadline.
//
// Restart decisions are pure (policy.go) and tested with a fake clock; the
// process side (process groups, death signal, output capture) is in
// process_linux.go.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

// Spec declares one service. Exactly one of Run and Command is set.
type Spec struct {
	// Name is short and stable (lower-case letters, digits, '-' and '_');
	// it appears in logs, metrics and health warnings.
	Name string
	// Run is an internal service. It must return when ctx is done; a
	// non-nil error before that is a crash, nil means it has finished
	// and is not restarted.
	Run func(ctx context.Context) error
	// Command is an external child process.
	Command *Command
	// Ready reports whether the service is ready to serve (a socket
	// answers, a file exists); it is polled until it returns nil. Nil
	// means ready as soon as it is started.
	Ready func(ctx context.Context) error
	// Critical services make Healthy fail while they are failed, which
	// stops the watchdog kicks: the box reboots.
	Critical bool
}

// Command is an external child.
type Command struct {
	Path string   // absolute path of the program
	Args []string // arguments after the program name
	Env  []string // nil inherits the daemon's environment
	Dir  string   // working directory; empty is the daemon's
}

// State is where a service is in its life.
type State string

const (
	Starting State = "starting" // started, not ready yet
	Running  State = "running"
	Backoff  State = "backoff" // exited, waiting to restart
	Failed   State = "failed"  // crash-looping, waiting for the next retry
	Stopping State = "stopping"
	Stopped  State = "stopped" // stopped by the supervisor
	Finished State = "done"    // exited and not to be restarted
)

// Status is a snapshot of one service for the status page.
type Status struct {
	Name      string
	External  bool
	Critical  bool
	State     State
	PID       int       // external children while running
	Since     time.Time // when State was entered
	Restarts  int
	LastExit  string    // "exit code 1", "signal: killed", "error: ..."
	LastAt    time.Time // when it last exited
	NextStart time.Time // in Backoff and Failed
	Reason    string    // why it is in Backoff, Failed or Finished
}

// Tracker is told which pids the supervisor waits for itself, so that the
// PID 1 reaper leaves them alone.
type Tracker interface {
	Track(pid int)
	Untrack(pid int)
}

// Options are the supervisor's optional collaborators.
type Options struct {
	Policy  Policy  // zero: DefaultPolicy
	Tracker Tracker // nil: not PID 1
	// OutputSize bounds each service's stdout and stderr rings (bytes);
	// 0 means 64 KiB.
	OutputSize int
}

// Supervisor runs services. Build it with New, Add services, Start them,
// and Stop them all at the end.
type Supervisor struct {
	log    *slog.Logger
	now    func() time.Time
	health *health.Registry
	opts   Options
	base   context.Context // parent of internal services' contexts

	restarts *prometheus.CounterVec
	up       *prometheus.GaugeVec
	failed   *prometheus.GaugeVec

	mu       sync.Mutex
	services []*service
	started  bool
	stopped  bool
}

// New returns a supervisor. reg receives its metrics (nil: none); now is
// the clock (nil: time.Now).
func New(d box.Deps, opts Options) (*Supervisor, error) {
	d = d.For("supervisor")
	log, reg, now := d.Log, d.Metrics, d.Now
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy()
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("supervisor policy: %w", err)
	}
	if opts.OutputSize <= 0 {
		opts.OutputSize = 64 << 10
	}
	s := &Supervisor{
		log:    log,
		now:    now,
		health: d.Health,
		opts:   opts,
		base:   context.Background(),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_service_restarts_total",
			Help: "Times a supervised service was started again after it exited.",
		}, []string{"service"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "passerelle_service_up",
			Help: "1 while a supervised service is running.",
		}, []string{"service"}),
		failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "passerelle_service_failed",
			Help: "1 while a supervised service is marked failed (crash loop).",
		}, []string{"service"}),
	}
	for _, c := range []prometheus.Collector{s.restarts, s.up, s.failed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("supervisor metrics: %w", err)
		}
	}
	return s, nil
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Add declares a service. Before Start it joins the start order; after
// Start it is started at once.
func (s *Supervisor) Add(spec Spec) error {
	if !validName.MatchString(spec.Name) {
		return fmt.Errorf("service %q: name must be 1-32 lower-case letters, digits, '-' or '_'", spec.Name)
	}
	if (spec.Run == nil) == (spec.Command == nil) {
		return fmt.Errorf("service %s: exactly one of Run and Command must be set", spec.Name)
	}
	if spec.Command != nil {
		if err := spec.Command.validate(); err != nil {
			return fmt.Errorf("service %s: %w", spec.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("service %s: supervisor is stopped", spec.Name)
	}
	if slices.ContainsFunc(s.services, func(o *service) bool { return o.spec.Name == spec.Name }) {
		return fmt.Errorf("service %s: already supervised", spec.Name)
	}
	svc := &service{
		spec:     spec,
		hist:     newHistory(s.opts.Policy),
		stdout:   NewRing(s.opts.OutputSize),
		stderr:   NewRing(s.opts.OutputSize),
		stopc:    make(chan context.Context, 1),
		restartc: make(chan struct{}, 1),
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		state:    Stopped,
		since:    s.now(),
	}
	s.services = append(s.services, svc)
	if s.started {
		svc.launched = true
		go s.runService(svc)
	}
	return nil
}

// Start starts the services in order. Each one is given until the policy's
// ReadyTimeout to become ready before the next one starts anyway (logged):
// a slow service must not hold the box hostage. Start returns when every
// service was started, when ctx is done, or when Stop is called (it may
// run concurrently with Start).
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("supervisor already started")
	}
	s.started = true
	svcs := slices.Clone(s.services)
	s.mu.Unlock()
	for _, svc := range svcs {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return errors.New("supervisor stopped while starting")
		}
		svc.launched = true
		s.mu.Unlock()
		go s.runService(svc)
		t := time.NewTimer(s.opts.Policy.ReadyTimeout)
		select {
		case <-svc.ready:
		case <-svc.done:
		case <-t.C:
			s.log.Warn("service not ready in time; starting the next one anyway", "service", svc.spec.Name, "waited", s.opts.Policy.ReadyTimeout)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
	return nil
}

// Stop stops every service in reverse start order: each gets the policy's
// StopTimeout (or what is left of ctx, if less) after SIGTERM before
// SIGKILL. An internal service that ignores its cancelled context cannot
// be killed: it is abandoned and reported.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	svcs := slices.Clone(s.services)
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	var errs []error
	for i := len(svcs) - 1; i >= 0; i-- {
		if err := s.stopService(ctx, svcs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove stops one service and forgets it.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	i := slices.IndexFunc(s.services, func(o *service) bool { return o.spec.Name == name })
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("service %s: not supervised", name)
	}
	svc := s.services[i]
	s.services = slices.Delete(s.services, i, i+1)
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	return s.stopService(ctx, svc)
}

func (s *Supervisor) stopService(ctx context.Context, svc *service) error {
	s.mu.Lock()
	launched := svc.launched
	s.mu.Unlock()
	if !launched {
		return nil // Stop came before Start reached it
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.Policy.StopTimeout)
	defer cancel()
	svc.stopOnce.Do(func() { svc.stopc <- sctx })
	// The runner kills at sctx's end; allow it a moment more to collect
	// the killed child.
	grace := time.NewTimer(s.opts.Policy.StopTimeout + 2*time.Second)
	defer grace.Stop()
	select {
	case <-svc.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
		// The overall deadline passed: check once more, without waiting.
		select {
		case <-svc.done:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.log.Error("service did not stop; abandoning it", "service", svc.spec.Name)
	return fmt.Errorf("service %s: did not stop", svc.spec.Name)
}

// Restart ends a service's running instance as Stop would (SIGTERM, then
// SIGKILL after the policy's StopTimeout) and starts it again at once; a
// service waiting in backoff, marked failed or finished starts at once.
// A restart asked for is not a crash: it does not count towards the crash
// loop. The technician's status page calls it; name must be supervised.
func (s *Supervisor) Restart(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.services, func(o *service) bool { return o.spec.Name == name })
	switch {
	case i < 0:
		return fmt.Errorf("service %q: not supervised", name)
	case s.stopped:
		return fmt.Errorf("service %s: the supervisor is stopping", name)
	case !s.services[i].launched:
		return fmt.Errorf("service %s: not started yet", name)
	}
	switch s.services[i].state {
	case Stopping, Stopped:
		return fmt.Errorf("service %s: %s", name, s.services[i].state)
	}
	select {
	case s.services[i].restartc <- struct{}{}:
	default: // one already asked and not yet taken: the same restart
	}
	return nil
}

// Status returns a snapshot of every service, in start order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.services))
	for _, svc := range s.services {
		out = append(out, svc.status())
	}
	return out
}

// Output returns the kept stdout and stderr of a service.
func (s *Supervisor) Output(name string) (stdout, stderr []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if svc.spec.Name == name {
			return svc.stdout.Bytes(), svc.stderr.Bytes(), true
		}
	}
	return nil, nil, false
}

// Healthy returns an error while a critical service is failed. The
// watchdog stops kicking then, so the box reboots.
func (s *Supervisor) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []string
	for _, svc := range s.services {
		if svc.spec.Critical && svc.state == Failed {
			bad = append(bad, svc.spec.Name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("critical services failed: %v", bad)
	}
	return nil
}

// service is one supervised service. Its status fields are guarded by the
// supervisor's mu; the runner goroutine owns everything else.
type service struct {
	spec           Spec
	hist           *history
	stdout, stderr *Ring
	stopc          chan context.Context
	restartc       chan struct{} // a restart asked for (Restart)
	stopOnce       sync.Once
	ready          chan struct{} // closed when first ready
	readyOnce      sync.Once
	done           chan struct{} // closed when the runner returns
	launched       bool          // its runner was started (guarded by mu)

	state     State
	since     time.Time
	pid       int
	restarts  int
	lastExit  string
	lastAt    time.Time
	nextStart time.Time
	reason    string
}

func (svc *service) status() Status {
	return Status{
		Name: svc.spec.Name, External: svc.spec.Command != nil, Critical: svc.spec.Critical,
		State: svc.state, PID: svc.pid, Since: svc.since, Restarts: svc.restarts,
		LastExit: svc.lastExit, LastAt: svc.lastAt, NextStart: svc.nextStart, Reason: svc.reason,
	}
}

func (s *Supervisor) setState(svc *service, st State, reason string, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.state, svc.since, svc.reason, svc.nextStart = st, s.now(), reason, next
	up := 0.0
	if st == Starting || st == Running {
		up = 1
	}
	s.up.WithLabelValues(svc.spec.Name).Set(up)
	failed := 0.0
	if st == Failed {
		failed = 1
	}
	s.failed.WithLabelValues(svc.spec.Name).Set(failed)
}

// exit is how one run of a service ended.
type exit struct {
	code      int // exit code; -1 for a signal or an internal error
	desc      string
	finished  bool // an internal service returned nil on its own
	requested bool // stopped by Restart: start again at once
}

// instance is one run of a service.
type instance interface {
	pid() int
	exited() <-chan exit
	terminate() // SIGTERM the process group, or cancel the context
	kill()      // SIGKILL the process group; nothing for goroutines
}

func warningCode(name string) string { return "service-failed:" + name }

// runService is the life of one service: start, wait, decide, repeat,
// until it is stopped or finished.
func (s *Supervisor) runService(svc *service) {
	defer close(svc.done)
	name := svc.spec.Name
	log := s.log.With("service", name)
	first := true
	for {
		if !first {
			s.mu.Lock()
			svc.restarts++
			s.mu.Unlock()
			s.restarts.WithLabelValues(name).Inc()
		}
		first = false
		started := s.now()
		inst, err := s.start(svc, log)
		var ex exit
		if err != nil {
			log.Error("service could not start", "err", err)
			ex = exit{code: -1, desc: "start: " + err.Error()}
		} else {
			s.setState(svc, Starting, "", time.Time{})
			var stopped bool
			ex, stopped = s.watch(svc, inst, started, log)
			if stopped {
				return
			}
		}
		s.mu.Lock()
		svc.pid, svc.lastExit, svc.lastAt = 0, ex.desc, s.now()
		s.mu.Unlock()
		var dec Decision
		switch {
		case ex.requested:
			dec = Decision{Action: Restart, Reason: "restart requested"}
		case ex.finished:
			dec = Decision{Action: Done, Reason: "finished"}
		default:
			dec = svc.hist.exited(s.now(), started, ex.code)
		}
		var wait time.Duration
		switch dec.Action {
		case Done:
			log.Info("service exited; not restarting it", "exit", ex.desc, "reason", dec.Reason)
			s.setState(svc, Finished, dec.Reason, time.Time{})
			svc.readyOnce.Do(func() { close(svc.ready) })
			// Stay until stopped (so Stop and Status keep seeing it) or
			// restarted.
			if !s.waitStop(svc) {
				return
			}
			log.Info("service restarted on request", "event", "service-restart", "exit", ex.desc, "requested", true, "after", time.Duration(0))
			continue
		case Restart:
			if ex.requested {
				log.Info("service restarted on request", "event", "service-restart", "exit", ex.desc, "requested", true,
					"ran", s.now().Sub(started).Round(time.Millisecond), "after", time.Duration(0))
				continue
			}
			log.Warn("service exited; restarting", "event", "service-restart", "exit", ex.desc, "ran", s.now().Sub(started).Round(time.Millisecond), "after", dec.After, "requested", false)
			s.setState(svc, Backoff, dec.Reason, s.now().Add(dec.After))
			// A service that exited is not about to be ready: the start
			// order goes on without it rather than wait out ReadyTimeout
			// (tailscaled without its auth key held NTP and telemetry
			// back 30 s at every boot).
			svc.readyOnce.Do(func() { close(svc.ready) })
			wait = dec.After
		case Fail:
			log.Error("service is crash-looping; marked failed", "event", "service-failed", "exit", ex.desc, "reason", dec.Reason, "retry_in", dec.After)
			s.setState(svc, Failed, dec.Reason, s.now().Add(dec.After))
			sev := health.Warn
			if svc.spec.Critical {
				sev = health.Critical
			}
			s.health.Raise("supervisor", warningCode(name), sev,
				fmt.Sprintf("Service %s keeps stopping (%s; last: %s). It is tried again every %s.", name, dec.Reason, ex.desc, dec.After))
			// Let the start order go on without it.
			svc.readyOnce.Do(func() { close(svc.ready) })
			wait = dec.After
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-svc.restartc:
			t.Stop()
			log.Info("service restarted on request", "event", "service-restart", "exit", ex.desc, "requested", true, "after", time.Duration(0))
		case <-svc.stopc:
			// Nothing runs: stopping is immediate.
			t.Stop()
			s.setState(svc, Stopped, "", time.Time{})
			log.Info("service stopped", "event", "service-stopped", "took", time.Duration(0), "killed", false)
			return
		}
	}
}

// waitStop parks a finished service until the supervisor stops it (false)
// or a restart is asked for (true).
func (s *Supervisor) waitStop(svc *service) bool {
	select {
	case <-svc.stopc:
		s.setState(svc, Stopped, svc.reason, time.Time{})
		return false
	case <-svc.restartc:
		return true
	}
}

// watch waits for one run to end: it exits, or the supervisor stops it.
// It also tracks readiness and the stable period.
func (s *Supervisor) watch(svc *service, inst instance, started time.Time, log *slog.Logger) (exit, bool) {
	readyCtx, cancelReady := context.WithCancel(s.base)
	defer cancelReady()
	readyc := make(chan struct{})
	go func() {
		if svc.spec.Ready != nil && pollReady(readyCtx, svc.spec.Ready) != nil {
			return
		}
		close(readyc)
	}()
	stable := time.NewTimer(svc.hist.stableAt(started).Sub(s.now()))
	defer stable.Stop()
	for {
		select {
		case <-readyc:
			readyc = nil
			log.Info("service ready", "event", "service-ready", "pid", inst.pid())
			s.setState(svc, Running, "", time.Time{})
			svc.readyOnce.Do(func() { close(svc.ready) })
		case <-stable.C:
			svc.hist.markStable()
			s.health.Clear(warningCode(svc.spec.Name))
		case ex := <-inst.exited():
			return ex, false
		case sctx := <-svc.stopc:
			s.stopInstance(svc, inst, sctx, log)
			return exit{}, true
		case <-svc.restartc:
			sctx, cancel := context.WithTimeout(s.base, s.opts.Policy.StopTimeout)
			s.stopInstance(svc, inst, sctx, log)
			cancel()
			return exit{code: 0, desc: "stopped for a restart", requested: true}, false
		}
	}
}

func (s *Supervisor) stopInstance(svc *service, inst instance, sctx context.Context, log *slog.Logger) {
	start := time.Now()
	s.setState(svc, Stopping, "", time.Time{})
	log.Info("stopping service", "pid", inst.pid())
	inst.terminate()
	killed := false
	select {
	case <-inst.exited():
	case <-sctx.Done():
		killed = true
		log.Warn("service did not stop in time; killing it", "pid", inst.pid())
		inst.kill()
		if svc.spec.Command != nil {
			<-inst.exited()
		} else {
			// A goroutine cannot be killed: give up on it.
			t := time.NewTimer(time.Second)
			select {
			case <-inst.exited():
			case <-t.C:
				log.Error("internal service ignores cancellation; abandoned")
			}
			t.Stop()
		}
	}
	s.mu.Lock()
	svc.pid = 0
	s.mu.Unlock()
	s.setState(svc, Stopped, "", time.Time{})
	log.Info("service stopped", "event", "service-stopped", "took", time.Since(start).Round(time.Millisecond), "killed", killed)
}

func pollReady(ctx context.Context, ready func(context.Context) error) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := ready(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Supervisor) start(svc *service, log *slog.Logger) (instance, error) {
	if svc.spec.Run != nil {
		return startInternal(s.base, svc.spec.Run), nil
	}
	p, err := startProcess(svc.spec.Command, svc.stdout, svc.stderr, log, s.opts.Tracker)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	svc.pid = p.pid()
	s.mu.Unlock()
	log.Info("service started", "pid", p.pid(), "path", svc.spec.Command.Path)
	return p, nil
}

// internal is one run of an internal service.
type internal struct {
	cancel context.CancelFunc
	ch     chan exit
}

func startInternal(base context.Context, run func(context.Context) error) *internal {
	ctx, cancel := context.WithCancel(base)
	in := &internal{cancel: cancel, ch: make(chan exit, 1)}
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
			switch {
			case err != nil:
				in.ch <- exit{code: -1, desc: "error: " + err.Error()}
			case ctx.Err() != nil:
				in.ch <- exit{code: 0, desc: "stopped"}
			default:
				in.ch <- exit{code: 0, desc: "returned", finished: true}
			}
		}()
		err = run(ctx)
	}()
	return in
}

func (in *internal) pid() int            { return 0 }
func (in *internal) exited() <-chan exit { return in.ch }
func (in *internal) terminate()          { in.cancel() }
func (in *internal) kill()               { in.cancel() }
