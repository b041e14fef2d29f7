package boot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"passerelle/board"
	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// SystemPlan is what the box sets up from the config before any network
// component: the host name and the board's kernel modules. Sysctls and lo
// follow from the board alone and are set on every apply.
type SystemPlan struct {
	Hostname   string
	Modules    []string
	Interfaces []board.Interface
}

func (p *SystemPlan) String() string {
	mods := "none"
	if len(p.Modules) > 0 {
		mods = strings.Join(p.Modules, ", ")
	}
	return fmt.Sprintf("hostname %s\nkernel modules: %s\n", p.Hostname, mods)
}

// DefaultSystemPlan is applied by an init that has no configuration yet:
// lo up and the sysctls, under a neutral host name.
func DefaultSystemPlan() *SystemPlan { return &SystemPlan{Hostname: "passerelle"} }

// System is the box component that owns the host name, lo, the board's
// kernel modules and the router's sysctls. It acts only when the daemon is
// the init (PID 1): in the lab and tests the daemon shares the host's
// kernel and UTS namespace, which it must never change. Modules once loaded
// stay loaded on rollback: unloading under a running firewall is worse than
// an unused module.
type System struct {
	log    *slog.Logger
	health *health.Registry
	opts   Options
	active bool

	mu   sync.Mutex
	last Report
}

var _ box.Component = (*System)(nil)

// NewSystem returns the system component; active says whether it may
// change the system (the daemon is PID 1).
func NewSystem(d box.Deps, opts Options, active bool) *System {
	d = d.For("system")
	return &System{log: d.Log, health: d.Health, opts: opts, active: active}
}

func (s *System) Name() string { return "system" }

// Plan reads the host name and the board's modules.
func (s *System) Plan(cfg *config.Config) (box.Plan, error) {
	p := &SystemPlan{Hostname: cfg.Identity.Hostname}
	if cfg.Board != "" {
		b, err := board.Lookup(cfg.Board)
		if err != nil {
			return nil, fmt.Errorf("board %s: %w", cfg.Board, err)
		}
		p.Modules = b.AllModules()
		p.Interfaces = b.Interfaces
	}
	return p, nil
}

// Apply sets the host name, brings lo up, loads the modules and sets the
// sysctls (Configure). Failed steps are reported, not fatal: a box that
// boots half configured can still be reached and repaired.
func (s *System) Apply(ctx context.Context, bp box.Plan) error {
	p, ok := bp.(*SystemPlan)
	if !ok {
		return fmt.Errorf("system: unexpected plan type %T", bp)
	}
	if !s.active {
		return nil
	}
	rep := Configure(ctx, s.log, s.health, SystemSetup{Hostname: p.Hostname, Modules: p.Modules, Interfaces: p.Interfaces}, s.opts)
	s.mu.Lock()
	s.last = rep
	s.mu.Unlock()
	// The one failure worth stopping the apply for: without nf_tables
	// the firewall fails with a bare "invalid argument"; this says why.
	for _, st := range rep {
		if st.Name == StepNFTables && st.Err != nil {
			return st.Err
		}
	}
	return nil
}

// Report returns the steps of the last Apply (empty when inactive).
func (s *System) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(Report(nil), s.last...)
}
