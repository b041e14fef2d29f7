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
	Restart(name string) error
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
	// KeyEvery is how often the auth key file is checked again (default
	// 5 s), so a key a technician drops in enrols the box without a
	// reboot or a new configuration.
	KeyEvery time.Duration
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
	// key is the auth key file as tailscaled's config was last written
	// for (with the key, or without it when it is not usable).
	key KeyCheck
	obs observer
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
	if o.KeyEvery <= 0 {
		o.KeyEvery = 5 * time.Second
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
		t.key = KeyCheck{}
		t.obs.enrol = ""
		for _, w := range []string{warnDown, warnUnavailable, warnNotEnrolled, warnKeyInvalid} {
			t.health.Clear(w)
		}
		return nil
	}
	if t.opts.Supervisor == nil {
		return errors.New("tunnel: no supervisor to run tailscaled")
	}
	for _, dir := range []string{t.opts.RunDir, filepath.Join(t.opts.RunDir, "logs"), p.StateDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("tunnel: %w", err)
		}
	}
	key := CheckAuthKey(p.AuthKeyFile)
	if err := t.writeConfig(p, key); err != nil {
		return err
	}
	prevKey := t.key
	t.key = key
	t.keyChanged(prevKey, key, old == nil || old.AuthKeyFile != p.AuthKeyFile)
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
		t.obs.login = loginState{}
		t.log.Info("tunnel starting", "event", "tunnel-state", "state", "starting", "control", p.ControlURL)
	case p.NeedsRestart(old):
		if err := t.restart(ctx, bin, p, "settings"); err != nil {
			return err
		}
	case t.keyNeedsRestart(prevKey, key):
		if err := t.restart(ctx, bin, p, "auth-key"); err != nil {
			return err
		}
	default:
		if err := t.editPrefs(ctx, p); err != nil {
			t.log.Warn("tunnel preferences not edited in place: restarting tailscaled", "err", err)
			if err := t.restart(ctx, bin, p, "prefs"); err != nil {
				return err
			}
		}
	}
	t.plan = p
	return nil
}

// writeConfig writes tailscaled's config for plan p and the key file as
// key found it.
func (t *Tunnel) writeConfig(p *Plan, key KeyCheck) error {
	conf, err := p.ConfigFile(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(t.configPath(), conf, 0o600); err != nil {
		return fmt.Errorf("tunnel: write tailscaled config: %w", err)
	}
	return nil
}

// restart replaces the running tailscaled with one reading the current
// config file; t.mu held. why is the event's: settings (control server,
// key file or state directory), auth-key (a usable key appeared while the
// box is not enrolled), prefs (EditPrefs failed).
func (t *Tunnel) restart(ctx context.Context, bin string, p *Plan, why string) error {
	msg := "tunnel settings changed: restarting tailscaled"
	if why == "auth-key" {
		msg = "auth key found in " + p.AuthKeyFile + ": restarting tailscaled to enrol the box"
	}
	t.log.Info(msg, "event", "tunnel-restart", "why", why, "control", p.ControlURL)
	if err := t.opts.Supervisor.Remove(ctx, ServiceName); err != nil {
		return fmt.Errorf("stop tailscaled: %w", err)
	}
	// What the previous tailscaled said of its login is void: no warning
	// about a key until the new one has tried it.
	t.obs.login = loginState{}
	t.obs.st.Enrolment, t.obs.st.EnrolReason = EnrolUnknown, ""
	if err := t.opts.Supervisor.Add(t.spec(bin, p)); err != nil {
		t.running = false
		return fmt.Errorf("supervise tailscaled: %w", err)
	}
	return nil
}

// keyNeedsRestart reports whether tailscaled must restart to use the key
// file now: it holds a usable key that tailscaled was not started with
// (tailscaled reads the key only when it starts), and tailscaled is not in
// the tailnet, so the restart costs nothing: a box not enrolled yet, or
// one the control server no longer accepts (its node deleted or expired
// at the academy). A box in the tailnet needs no key, and a key put back
// there for later is not worth a tunnel outage. t.mu held.
func (t *Tunnel) keyNeedsRestart(prev, cur KeyCheck) bool {
	return cur.Usable() && prev.changed(cur) && !t.obs.inTailnet
}

// keyChanged logs a change of the auth key file (event=tunnel-key), or its
// state when first checked (first); t.mu held. The key itself is never
// logged.
func (t *Tunnel) keyChanged(prev, cur KeyCheck, first bool) {
	if !first && !prev.changed(cur) {
		return
	}
	switch cur.State {
	case KeyPresent:
		t.log.Info("tunnel auth key present in "+cur.File, "event", "tunnel-key", "file", cur.File, "state", string(cur.State))
	default:
		msg := "tunnel auth key not usable: " + cur.Reason() + "; tailscaled runs without it (an enrolled box needs none)"
		t.log.Warn(msg, "event", "tunnel-key", "file", cur.File, "state", string(cur.State), "reason", cur.Reason())
	}
}

// recheckKey reads the auth key file again; when it changed, rewrites
// tailscaled's config and, if the box waits for a key, restarts tailscaled
// with it.
func (t *Tunnel) recheckKey(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.plan
	if p == nil || !p.Enabled || !t.running {
		return
	}
	key := CheckAuthKey(p.AuthKeyFile)
	if !t.key.changed(key) {
		return
	}
	if err := t.writeConfig(p, key); err != nil {
		t.log.Error("tailscaled's config not rewritten for the auth key file's change", "err", err)
		return
	}
	prev := t.key
	t.key = key
	t.keyChanged(prev, key, false)
	if !t.keyNeedsRestart(prev, key) {
		return
	}
	bin, err := t.binary()
	if err == nil {
		err = t.restart(ctx, bin, p, "auth-key")
	}
	if err != nil {
		t.log.Error("tailscaled not restarted with the new auth key", "err", err)
	}
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
	env := append(os.Environ(), "TS_LOGS_DIR="+filepath.Join(run, "logs"),
		// Advertise only the endpoints STUN finds through the uplink in
		// use, not the addresses of every uplink: the academy is never on
		// the school's LAN, and a peer keeps answering to an address as
		// long as the box's call-me-maybe lists it, so a dead uplink's
		// address, still on its interface, held the academy's replies for
		// seconds after a failover (see follow, docs/benchmarks.md).
		"TS_DEBUG_OMIT_LOCAL_ADDRS=true")
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
