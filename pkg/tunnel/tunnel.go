package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"tailscale.com/client/local"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/netmark"
	"passerelle/pkg/supervisor"
)

// ServiceName is tailscaled's name in the supervisor.
const ServiceName = "tailscaled"

// DefaultRunDir holds tailscaled's config file, LocalAPI socket and logs.
const DefaultRunDir = "/run/passerelle/tunnel"

// Supervisor runs tailscaled (*supervisor.Supervisor).
type Supervisor interface {
	Add(spec supervisor.Spec) error
	Remove(ctx context.Context, name string) error
}

// Uplinks tells which uplink tailscaled's own traffic should take
// (*uplink.Manager): the mark of the named uplink while it is usable, 0
// otherwise.
type Uplinks interface {
	Preferred(name string) uint32
}

// Options are the tunnel's collaborators and paths. The zero value plans
// only: Apply fails without a Supervisor.
type Options struct {
	Supervisor Supervisor
	Uplinks    Uplinks // nil: tailscaled's traffic follows the uplink of new flows
	// Tailscaled is the program; "" means "tailscaled" beside the running
	// executable, else /usr/sbin/tailscaled.
	Tailscaled string
	RunDir     string   // "" is DefaultRunDir
	Env        []string // added to the daemon's environment for tailscaled
	// Poll is the interval of the LocalAPI status poll (default 1 s);
	// PingEvery the interval of the round-trip measurement (default 5 s).
	Poll      time.Duration
	PingEvery time.Duration
}

// Tunnel is the tunnel component, a box.Service: Apply renders tailscaled's
// config and has the supervisor run it; Run observes it.
type Tunnel struct {
	log    *slog.Logger
	now    func() time.Time
	health *health.Registry
	opts   Options
	m      *metrics

	mu      sync.Mutex
	plan    *Plan // applied; nil before the first Apply
	running bool  // tailscaled handed to the supervisor
	obs     observer
}

// New returns the tunnel component.
func New(d box.Deps, o Options) *Tunnel {
	d = d.For("tunnel")
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.PingEvery <= 0 {
		o.PingEvery = 5 * time.Second
	}
	t := &Tunnel{log: d.Log, now: d.Now, health: d.Health, opts: o}
	t.m = newMetrics(d.Metrics)
	return t
}

func (t *Tunnel) Name() string { return "tunnel" }

func (t *Tunnel) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

// Socket is the LocalAPI socket.
func (t *Tunnel) Socket() string { return filepath.Join(t.opts.RunDir, "tailscaled.sock") }

func (t *Tunnel) configPath() string { return filepath.Join(t.opts.RunDir, "tailscaled.json") }

// Client is a LocalAPI client of the box's tailscaled.
func (t *Tunnel) Client() *local.Client {
	return &local.Client{Socket: t.Socket(), UseSocketOnly: true}
}

// Apply renders tailscaled's config and makes the supervisor run it (or
// stop it). A running tailscaled gets new preferences through EditPrefs,
// or is restarted when they cannot be edited in place.
func (t *Tunnel) Apply(ctx context.Context, bp box.Plan) error {
	p, ok := bp.(*Plan)
	if !ok {
		return fmt.Errorf("tunnel: unexpected plan %T", bp)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.plan
	if !p.Enabled {
		if t.running {
			if err := t.opts.Supervisor.Remove(ctx, ServiceName); err != nil {
				return fmt.Errorf("stop tailscaled: %w", err)
			}
			t.running = false
			t.log.Info("tunnel disabled: tailscaled stopped", "event", "tunnel-state", "state", "disabled")
		}
		if err := setBypass(0); err != nil {
			return err
		}
		t.plan = p
		t.health.Clear(warnDown)
		t.health.Clear(warnUnavailable)
		return nil
	}
	if t.opts.Supervisor == nil {
		return errors.New("tunnel: no supervisor to run tailscaled")
	}
	conf, err := p.ConfigFile()
	if err != nil {
		return err
	}
	for _, dir := range []string{t.opts.RunDir, filepath.Join(t.opts.RunDir, "logs"), p.StateDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("tunnel: %w", err)
		}
	}
	if err := atomicfile.Replace(t.configPath(), conf, 0o600); err != nil {
		return fmt.Errorf("tunnel: write tailscaled config: %w", err)
	}
	if err := setBypass(t.bypassTable(p)); err != nil {
		return err
	}
	bin, err := t.binary()
	if err != nil {
		// The box routes without the tunnel: say so, do not reject the
		// whole configuration.
		t.health.Raise("tunnel", warnUnavailable, health.Critical,
			"The tunnel to the academy cannot start: the tailscaled program is missing from the firmware.")
		t.log.Error("tailscaled missing: no tunnel", "event", "tunnel-state", "state", "unavailable", "err", err)
		t.plan = p
		return nil
	}
	t.health.Clear(warnUnavailable)
	switch {
	case !t.running:
		if err := t.opts.Supervisor.Add(t.spec(bin, p)); err != nil {
			return fmt.Errorf("supervise tailscaled: %w", err)
		}
		t.running = true
		t.log.Info("tunnel starting", "event", "tunnel-state", "state", "starting", "control", p.ControlURL)
	case p.NeedsRestart(old):
		t.log.Info("tunnel settings changed: restarting tailscaled", "event", "tunnel-restart", "control", p.ControlURL)
		if err := t.opts.Supervisor.Remove(ctx, ServiceName); err != nil {
			return fmt.Errorf("stop tailscaled: %w", err)
		}
		if err := t.opts.Supervisor.Add(t.spec(bin, p)); err != nil {
			t.running = false
			return fmt.Errorf("supervise tailscaled: %w", err)
		}
	default:
		if err := t.editPrefs(ctx, p); err != nil {
			t.log.Warn("tunnel preferences not edited in place: restarting tailscaled", "err", err)
			if err := t.opts.Supervisor.Remove(ctx, ServiceName); err != nil {
				return fmt.Errorf("stop tailscaled: %w", err)
			}
			if err := t.opts.Supervisor.Add(t.spec(bin, p)); err != nil {
				t.running = false
				return fmt.Errorf("supervise tailscaled: %w", err)
			}
		}
	}
	t.plan = p
	return nil
}

// editPrefs hands the running tailscaled the plan's preferences.
func (t *Tunnel) editPrefs(ctx context.Context, p *Plan) error {
	mp, err := p.Prefs()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := t.Client().EditPrefs(ctx, mp); err != nil {
		return err
	}
	t.log.Info("tunnel preferences updated", "event", "tunnel-prefs", "advertise", prefixes(p.AdvertiseRoutes))
	return nil
}

// spec is tailscaled under the supervisor.
func (t *Tunnel) spec(bin string, p *Plan) supervisor.Spec {
	run := t.opts.RunDir
	env := append(os.Environ(), "TS_LOGS_DIR="+filepath.Join(run, "logs"))
	env = append(env, t.opts.Env...)
	return supervisor.Spec{
		Name: ServiceName,
		Command: &supervisor.Command{
			Path: bin,
			Args: []string{
				"--config=" + t.configPath(),
				"--state=" + filepath.Join(p.StateDir, "tailscaled.state"),
				"--statedir=" + p.StateDir,
				"--socket=" + t.Socket(),
				"--tun=" + Interface,
				fmt.Sprintf("--port=%d", Port),
				"--no-logs-no-support",
			},
			Env: env,
			Dir: run,
		},
		Ready: func(ctx context.Context) error {
			_, err := t.Client().StatusWithoutPeers(ctx)
			return err
		},
	}
}

// binary finds the tailscaled program.
func (t *Tunnel) binary() (string, error) {
	cands := []string{t.opts.Tailscaled}
	if t.opts.Tailscaled == "" {
		cands = []string{"/usr/sbin/tailscaled"}
		if exe, err := os.Executable(); err == nil {
			cands = append([]string{filepath.Join(filepath.Dir(exe), "tailscaled")}, cands...)
		}
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no tailscaled program at %v", cands)
}

// bypassTable is the routing table of tailscaled's own traffic: the
// preferred uplink's while it is usable, else the table of new flows.
func (t *Tunnel) bypassTable(p *Plan) int {
	if p.PreferUplink != "" && t.opts.Uplinks != nil {
		if i := netmark.UplinkIndex(t.opts.Uplinks.Preferred(p.PreferUplink)); i >= 0 {
			return netmark.UplinkTable(i)
		}
	}
	return netmark.TableActive
}

// via names the uplink of a bypass table, for messages.
func (t *Tunnel) via(p *Plan, table int) string {
	if table != netmark.TableActive && p.PreferUplink != "" {
		return p.PreferUplink
	}
	return "the active uplink"
}
