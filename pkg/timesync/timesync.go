package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// Clock steers the system clock. The daemon passes one only when it owns
// the clock (on the board); without one the service measures and reports,
// and never touches the clock. Lab namespaces and tests share the host's
// clock, so they must never get one.
type Clock interface {
	Step(offset time.Duration) error // jump by offset
	Slew(offset time.Duration) error // converge by offset gradually
}

// Options configure the service; the zero value measures only, with the
// system's resolver and dialer.
type Options struct {
	Clock   Clock // nil: never set the clock
	Dial    DialFunc
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Poll is the interval between measurements once synchronised
	// (default 64 s); RetryMin the first retry after a failed round
	// (default 2 s, doubling up to Poll).
	Poll     time.Duration
	RetryMin time.Duration
	// QueryTimeout bounds one query (default 2 s).
	QueryTimeout time.Duration
}

// Thresholds of the clock discipline.
const (
	// stepThreshold is the offset above which the clock is stepped rather
	// than slewed, and above which an unsteered clock counts as wrong.
	stepThreshold = 128 * time.Millisecond
	// failedRoundsWarn is how many failed rounds in a row raise a warning.
	failedRoundsWarn = 3
	// staleAfter is how many poll intervals a measurement stays valid.
	staleAfter = 4
	// serversPerName bounds the addresses tried for one host name.
	serversPerName = 2
)

const warnCode = "time-unsynchronised"

// Status is the service's view of the box's clock.
type Status struct {
	Synced    bool          // the box's time is within stepThreshold of a good server
	Steered   bool          // the service sets the system clock
	Offset    time.Duration // last measured: server minus box
	Delay     time.Duration
	Server    netip.Addr // source of the last good measurement
	Stratum   uint8
	Leap      uint8
	RootDelay time.Duration
	RootDisp  time.Duration
	LastSync  time.Time // last good measurement (zero: never)
	Err       string    // why the last round failed, if it did
}

// Service is the time component of the box.
type Service struct {
	log    *slog.Logger
	now    func() time.Time
	health *health.Registry
	opts   Options
	m      *metrics

	mu      sync.Mutex
	plan    *Plan
	status  Status
	failed  int // failed rounds in a row
	changed chan struct{}
}

var _ box.Service = (*Service)(nil)

// New returns the time component.
func New(d box.Deps, opts Options) *Service {
	d = d.For("time")
	log, reg := d.Log, d.Metrics
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Resolve == nil {
		opts.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		}
	}
	if opts.Poll == 0 {
		opts.Poll = 64 * time.Second
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 2 * time.Second
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = 2 * time.Second
	}
	s := &Service{log: log, now: d.Now, health: d.Health, opts: opts, m: newMetrics(), changed: make(chan struct{}, 1)}
	s.status.Steered = opts.Clock != nil
	for _, c := range s.m.collectors() {
		if err := reg.Register(c); err != nil {
			log.Error("time metrics not registered", "err", err)
		}
	}
	s.m.steered.Set(boolFloat(s.status.Steered))
	return s
}

func (s *Service) Name() string { return "time" }

func (s *Service) Plan(cfg *config.Config) (box.Plan, error) { return compile(cfg) }

// Apply takes the new plan; Run follows it (servers at the next round,
// listeners at once).
func (s *Service) Apply(ctx context.Context, p box.Plan) error {
	plan, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("time: unexpected plan type %T", p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.plan = plan
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// Status returns the current view of the clock.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run measures the clock and serves the zones until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.syncLoop(ctx)
	}()

	running := map[Listener]context.CancelFunc{}
	for {
		s.mu.Lock()
		var want []Listener
		if s.plan != nil {
			want = s.plan.Listen
		}
		s.mu.Unlock()
		keep := map[Listener]bool{}
		for _, l := range want {
			keep[l] = true
			if _, ok := running[l]; ok {
				continue
			}
			lctx, lcancel := context.WithCancel(ctx)
			running[l] = lcancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(lctx, l)
			}()
		}
		for l, c := range running {
			if !keep[l] {
				c()
				delete(running, l)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

func (s *Service) syncLoop(ctx context.Context) {
	retry := s.opts.RetryMin
	for {
		ok := s.round(ctx)
		wait := s.opts.Poll
		if ok {
			retry = s.opts.RetryMin
		} else {
			wait, retry = retry, min(retry*2, s.opts.Poll)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// round measures every configured server once, keeps the best sample
// (shortest round trip: the least disturbed by queueing) and updates the
// clock and the status. It reports whether a sample was obtained.
func (s *Service) round(ctx context.Context) bool {
	s.mu.Lock()
	var servers []string
	if s.plan != nil {
		servers = s.plan.Servers
	}
	s.mu.Unlock()
	var best *sample
	var errs []error
	for _, name := range servers {
		addrs, err := s.resolve(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			s.m.queries.WithLabelValues("resolve_error").Inc()
			continue
		}
		for _, a := range addrs {
			smp, err := query(ctx, s.opts.Dial, netip.AddrPortFrom(a, Port), s.now, s.opts.QueryTimeout)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", name, a, err))
				s.m.queries.WithLabelValues("failed").Inc()
				continue
			}
			s.m.queries.WithLabelValues("ok").Inc()
			if best == nil || smp.delay < best.delay {
				best = &smp
			}
		}
	}
	if ctx.Err() != nil {
		return false
	}
	if best == nil {
		err := errors.Join(errs...)
		if err == nil {
			err = errors.New("no server configured")
		}
		s.noSample(err)
		return false
	}
	s.gotSample(*best)
	return true
}

func (s *Service) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	addrs, err := s.opts.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && len(out) < serversPerName {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no IPv4 address")
	}
	return out, nil
}

// gotSample applies one good measurement.
func (s *Service) gotSample(smp sample) {
	now := s.now()
	offset := smp.offset
	steered := s.opts.Clock != nil
	synced := offset.Abs() <= stepThreshold
	if steered {
		var err error
		kind := "slew"
		if offset.Abs() > stepThreshold {
			kind = "step"
			err = s.opts.Clock.Step(offset)
		} else {
			err = s.opts.Clock.Slew(offset)
		}
		if err != nil {
			s.log.Error("could not set the system clock", "offset", offset, "err", err)
			synced = false
		} else {
			s.m.adjust.WithLabelValues(kind).Inc()
			if kind == "step" {
				s.log.Info("system clock stepped", "offset", offset, "server", smp.server)
			}
			synced = true
		}
	}
	s.mu.Lock()
	was := s.status.Synced
	s.status = Status{
		Synced: synced, Steered: steered, Offset: offset, Delay: smp.delay, Server: smp.server,
		Stratum: smp.stratum, Leap: smp.leap, RootDelay: smp.rootDelay, RootDisp: smp.rootDisp, LastSync: now,
	}
	s.failed = 0
	st := s.status
	s.mu.Unlock()

	s.m.offset.Set(offset.Seconds())
	s.m.delay.Set(smp.delay.Seconds())
	s.m.stratum.Set(float64(smp.stratum))
	s.m.lastSync.Set(float64(now.UnixNano()) / 1e9)
	s.m.synced.Set(boolFloat(synced))
	switch {
	case synced:
		s.clear()
		if !was {
			s.log.Info("clock synchronised", "event", "time-synced", "server", st.Server, "stratum", st.Stratum, "offset", offset, "delay", st.Delay, "steered", steered)
		}
	case !steered:
		s.raise(fmt.Sprintf("The box's clock is off by %s from %s and the firmware is not allowed to set it here.", offset.Round(time.Millisecond), smp.server))
		if was {
			s.log.Warn("clock off and not steered by the firmware", "offset", offset, "server", smp.server)
		}
	default:
		s.raise(fmt.Sprintf("The box's clock could not be set (off by %s).", offset.Round(time.Millisecond)))
	}
}

// noSample records a failed round. The clock stays "synchronised" while
// the last measurement is recent: one lost packet is no news.
func (s *Service) noSample(err error) {
	now := s.now()
	s.mu.Lock()
	s.failed++
	s.status.Err = err.Error()
	stale := s.status.LastSync.IsZero() || now.Sub(s.status.LastSync) > staleAfter*s.opts.Poll
	was := s.status.Synced
	if stale {
		s.status.Synced = false
	}
	failed := s.failed
	synced := s.status.Synced
	s.mu.Unlock()
	s.m.synced.Set(boolFloat(synced))
	if was && !synced {
		s.log.Warn("clock no longer synchronised", "err", err)
	} else if failed == 1 {
		s.log.Warn("no NTP server answered", "err", err)
	}
	if !synced && failed >= failedRoundsWarn {
		s.raise(fmt.Sprintf("The box cannot reach its time servers (%v); certificates and logins may fail if its clock drifts.", err))
	}
}

func (s *Service) raise(msg string) {
	s.health.Raise(s.Name(), warnCode, health.Warn, msg)
}

func (s *Service) clear() {
	s.health.Clear(warnCode)
}

// serve answers NTP queries on one zone address until ctx is done.
func (s *Service) serve(ctx context.Context, l Listener) {
	log := s.log.With("zone", l.Zone, "addr", l.Addr)
	for ctx.Err() == nil {
		conn, err := listen(netip.AddrPortFrom(l.Addr, Port))
		if err != nil {
			log.Warn("NTP service cannot listen; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			continue
		}
		log.Info("NTP serving")
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = s.readLoop(conn, l.Zone)
		stop()
		conn.Close()
		if ctx.Err() == nil {
			log.Warn("NTP socket failed; reopening", "err", err)
			time.Sleep(time.Second)
		}
	}
}

func (s *Service) readLoop(conn net.PacketConn, zone string) error {
	buf := make([]byte, 1024)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		rx := s.now()
		resp, ok := respond(buf[:n], rx, s.Status(), s.now)
		if !ok {
			s.m.served.WithLabelValues(zone, "malformed").Inc()
			continue
		}
		if _, err := conn.WriteTo(resp, from); err != nil {
			s.m.served.WithLabelValues(zone, "send_error").Inc()
			continue
		}
		s.m.served.WithLabelValues(zone, "answered").Inc()
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
