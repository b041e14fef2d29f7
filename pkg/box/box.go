// Package box composes the components of a Passerelle box and owns applying
// a whole configuration: every component plans first (pure, no kernel
// access), then the plans are applied in dependency order, and if one fails
// the previous configuration is restored. Start-up, SIGHUP and (later) the
// NOC's configuration push all go through Box.Apply.
package box

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"passerelle/pkg/config"
)

// Plan is a component's desired state for one config. String renders it as
// stable text for golden tests and `passerellectl` review.
type Plan interface {
	String() string
}

// Component is one part of the box (interfaces, firewall, DNS, ...).
type Component interface {
	// Name is short and stable: it appears in logs, reports and metrics.
	Name() string
	// Plan computes the desired state from a valid config. It must not touch
	// the kernel or the network, so it can run for a config that will never
	// be applied (validation of a pushed bundle, NOC review).
	Plan(cfg *config.Config) (Plan, error)
	// Apply makes the system match the plan. It is called with a plan from
	// this component's Plan, and again with the previous plan on rollback,
	// so it must converge from any state, including a half-applied one.
	Apply(ctx context.Context, p Plan) error
}

// Service is a component with work of its own: servers (DNS, DHCP, NTP),
// probe loops, supervised children. The daemon's supervisor calls Run after
// the first successful Apply, and again (with backoff) if it returns an
// error; later Applies hand the running service new plans, which it must
// take without dropping work in flight. Run returns when ctx is done (nil)
// or when the service fails.
type Service interface {
	Component
	Run(ctx context.Context) error
}

// Result is what happened to one component during an apply.
type Result struct {
	Component string
	Took      time.Duration
	Err       error
}

// Report describes one Box.Apply: per-component results, and whether the
// previous config had to be restored.
type Report struct {
	Results     []Result
	RolledBack  bool
	RollbackErr error
}

func (r Report) String() string {
	var b strings.Builder
	for _, res := range r.Results {
		status := "ok"
		if res.Err != nil {
			status = "FAILED: " + res.Err.Error()
		}
		fmt.Fprintf(&b, "%-10s %8s  %s\n", res.Component, res.Took.Round(time.Microsecond), status)
	}
	if r.RolledBack {
		fmt.Fprintf(&b, "rolled back to the previous configuration")
		if r.RollbackErr != nil {
			fmt.Fprintf(&b, " (with errors: %v)", r.RollbackErr)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Box applies configurations to a set of components.
type Box struct {
	log        *slog.Logger
	components []Component
	now        func() time.Time

	mu      sync.Mutex // one apply at a time
	current atomic.Pointer[config.Config]
	plans   []Plan // plans of current, by component index; under mu
}

// New returns a box made of components, listed in the order they are
// applied: later components may rely on earlier ones (the firewall on the
// interfaces existing, DNS on the firewall's redirect).
func New(log *slog.Logger, components ...Component) *Box {
	return &Box{log: log, components: components, now: time.Now}
}

// Services returns the components that have work of their own, in apply
// order.
func (b *Box) Services() []Service {
	var out []Service
	for _, c := range b.components {
		if s, ok := c.(Service); ok {
			out = append(out, s)
		}
	}
	return out
}

// Current returns the config last applied successfully, or nil. It never
// waits for an apply in progress (the status page reads it while the NOC
// pushes); the returned config must not be modified.
func (b *Box) Current() *config.Config {
	return b.current.Load()
}

// PlanError reports the components that could not plan a config; nothing
// was applied.
type PlanError struct {
	Errs []error
}

func (e *PlanError) Error() string {
	return "config not applied: " + errors.Join(e.Errs...).Error()
}

func (e *PlanError) Unwrap() []error { return e.Errs }

// Plan validates cfg and plans every component, without applying anything.
func (b *Box) Plan(cfg *config.Config) ([]Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, &PlanError{Errs: []error{err}}
	}
	plans := make([]Plan, len(b.components))
	var errs []error
	for i, c := range b.components {
		p, err := c.Plan(cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
			continue
		}
		plans[i] = p
	}
	if len(errs) > 0 {
		return nil, &PlanError{Errs: errs}
	}
	return plans, nil
}

// Apply makes cfg the running configuration. If planning fails nothing is
// touched. If a component fails to apply, every component applied so far
// (the failed one included, as it may be half-applied) is given back its
// previous plan, in the same order, and the previous config stays current.
func (b *Box) Apply(ctx context.Context, cfg *config.Config) (Report, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var rep Report
	plans, err := b.Plan(cfg)
	if err != nil {
		return rep, err
	}
	for i, c := range b.components {
		start := b.now()
		err := c.Apply(ctx, plans[i])
		rep.Results = append(rep.Results, Result{Component: c.Name(), Took: b.now().Sub(start), Err: err})
		if err != nil {
			b.log.Error("component failed to apply; restoring the previous configuration", "component", c.Name(), "err", err)
			rep.RolledBack = true
			rep.RollbackErr = b.rollback(ctx, i)
			return rep, fmt.Errorf("apply %s: %w", c.Name(), err)
		}
		b.log.Debug("component applied", "component", c.Name(), "took", rep.Results[i].Took)
	}
	b.plans = plans
	b.current.Store(cfg)
	return rep, nil
}

// rollback re-applies the previous plans of components 0..failed. With no
// previous config (the first apply) there is nothing to return to, and the
// components are left as they are.
func (b *Box) rollback(ctx context.Context, failed int) error {
	if b.plans == nil {
		return errors.New("no previous configuration to restore")
	}
	var errs []error
	for i := 0; i <= failed; i++ {
		c := b.components[i]
		if err := c.Apply(ctx, b.plans[i]); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", c.Name(), err))
			b.log.Error("could not restore component", "component", c.Name(), "err", err)
		}
	}
	return errors.Join(errs...)
}

// Plans renders the plans of cfg as text, component by component: what
// `passerellectl render`-style reviews and golden tests read.
func (b *Box) Plans(cfg *config.Config) (string, error) {
	plans, err := b.Plan(cfg)
	if err != nil {
		return "", err
	}
	var s strings.Builder
	for i, c := range b.components {
		fmt.Fprintf(&s, "# %s\n%s", c.Name(), plans[i].String())
	}
	return s.String(), nil
}
