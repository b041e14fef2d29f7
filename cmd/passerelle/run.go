package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"passerelle/board"
	"passerelle/pkg/boot"
	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/dhcpd"
	"passerelle/pkg/dnsfilter"
	"passerelle/pkg/firewall"
	"passerelle/pkg/health"
	"passerelle/pkg/netif"
	"passerelle/pkg/power"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/timesync"
	"passerelle/pkg/uplink"
	"passerelle/pkg/version"
	"passerelle/pkg/watchdog"
)

// cmdRun runs the box: apply the config, supervise the services, re-apply
// the config on SIGHUP, and stop on SIGTERM or SIGINT.
//
// As PID 1 (on the board) it is also the init: it mounts the kernel
// filesystems and /perm before anything else, sets up the system from the
// config and the board definition, reaps orphans, arms the watchdog, and
// ends with a reboot (SIGTERM, SIGINT) or a power off (SIGUSR2), never
// by returning. As an ordinary process (lab, development) it touches no
// mounts and never reboots.
func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (required)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	leaseDir := fs.String("dhcp-lease-dir", dhcpd.DefaultLeaseDir, "directory of the DHCP lease files (one per zone)")
	setClock := fs.String("set-clock", "auto", "whether the box sets the system clock from NTP: auto (only when running as init, PID 1, i.e. on the board), always or never")
	var initf initFlags
	initf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle run: expected --config FILE\n%s", usage)
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle run: %v\n", err)
		return 2
	}
	policy, err := initf.policy()
	if err != nil {
		fmt.Fprintf(stderr, "passerelle run: %v\n", err)
		return 2
	}
	var extra []supervisor.Spec
	if initf.services != "" {
		if extra, err = loadServices(initf.services); err != nil {
			fmt.Fprintf(stderr, "passerelle run: %v\n", err)
			return 2
		}
	}

	pid1 := os.Getpid() == 1
	log.Info("starting", "version", version.String(), "config", *path, "pid", os.Getpid(), "init", pid1)
	h := health.New(time.Now)
	if pid1 {
		// Before anything reads a file: /perm holds the config.
		boot.Early(context.Background(), log.With("component", "boot"), h, initf.bootOptions())
	}
	owns, err := ownsClock(*setClock)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle run: %v\n", err)
		return 2
	}
	metrics := prometheus.NewRegistry()
	if err := metrics.Register(h.Collector()); err != nil {
		log.Error("health metrics", "err", err)
	}
	deps := boxDeps{leaseDir: *leaseDir, metrics: metrics, health: h}
	if owns {
		deps.clock = timesync.SystemClock{}
	}
	log.Info("clock", "set_by_firmware", owns)
	b := newBox(log, deps)
	d := &daemon{log: log, pid1: pid1, path: *path, box: b, health: h, metrics: deps.metrics, flags: initf, policy: policy, extra: extra}
	return d.run()
}

// initFlags are the flags of the init and the supervisor. Their defaults
// are the production values; tests shorten the delays.
type initFlags struct {
	permDevice, permDir     string
	watchdogDevice          string
	watchdogTimeout         time.Duration
	services                string
	backoffBase, backoffMax time.Duration
	stableAfter             time.Duration
	crashLoopExits          int
	crashLoopWindow         time.Duration
	failedRetry             time.Duration
	stopTimeout             time.Duration
	shutdownDeadline        time.Duration
	reapGrace               time.Duration
}

func (f *initFlags) register(fs *flag.FlagSet) {
	p := supervisor.DefaultPolicy()
	fs.StringVar(&f.permDevice, "perm-device", "", "persistent partition (block device or ext4 image file); default the partition named \"perm\" (PID 1 only)")
	fs.StringVar(&f.permDir, "perm-dir", "/perm", "where the persistent partition is mounted (PID 1 only)")
	fs.StringVar(&f.watchdogDevice, "watchdog-device", "", "watchdog device to arm; default the board's when PID 1, none otherwise")
	fs.DurationVar(&f.watchdogTimeout, "watchdog-timeout", 0, "watchdog timeout; default the board's")
	fs.StringVar(&f.services, "services", "", "YAML file of extra supervised commands (development and tests)")
	fs.DurationVar(&f.backoffBase, "backoff-base", p.BackoffBase, "first restart delay of a service; doubles on each exit")
	fs.DurationVar(&f.backoffMax, "backoff-max", p.BackoffMax, "longest restart delay")
	fs.DurationVar(&f.stableAfter, "stable-after", p.StableAfter, "run time after which a service's restart delay resets")
	fs.IntVar(&f.crashLoopExits, "crash-loop-exits", p.CrashLoopExits, "exits within --crash-loop-window that mark a service failed")
	fs.DurationVar(&f.crashLoopWindow, "crash-loop-window", p.CrashLoopWindow, "window of the crash-loop detection")
	fs.DurationVar(&f.failedRetry, "failed-retry", p.FailedRetry, "how often a failed service is tried again")
	fs.DurationVar(&f.stopTimeout, "stop-timeout", p.StopTimeout, "time a stopping service gets between SIGTERM and SIGKILL")
	fs.DurationVar(&f.shutdownDeadline, "shutdown-deadline", 30*time.Second, "time all services get to stop at shutdown")
	fs.DurationVar(&f.reapGrace, "reap-grace", 2*time.Second, "how long an orphan zombie is left to its owner before PID 1 reaps it")
}

func (f *initFlags) policy() (supervisor.Policy, error) {
	p := supervisor.DefaultPolicy()
	p.BackoffBase, p.BackoffMax, p.StableAfter = f.backoffBase, f.backoffMax, f.stableAfter
	p.CrashLoopExits, p.CrashLoopWindow, p.FailedRetry = f.crashLoopExits, f.crashLoopWindow, f.failedRetry
	p.StopTimeout = f.stopTimeout
	if err := p.Validate(); err != nil {
		return p, err
	}
	if f.shutdownDeadline <= 0 {
		return p, fmt.Errorf("--shutdown-deadline %s: must be positive", f.shutdownDeadline)
	}
	return p, nil
}

func (f *initFlags) bootOptions() boot.Options {
	return boot.Options{PermDevice: f.permDevice, PermDir: f.permDir}
}

// daemon is one run of the box.
type daemon struct {
	log     *slog.Logger
	pid1    bool
	path    string
	box     *box.Box
	health  *health.Registry
	metrics prometheus.Registerer
	flags   initFlags
	policy  supervisor.Policy
	extra   []supervisor.Spec

	sup             *supervisor.Supervisor
	wd              *watchdog.Watchdog
	servicesStarted bool
}

func (d *daemon) run() int {
	log := d.log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Signals are read here, one at a time, so a shutdown never races a
	// reload.
	stop := make(chan os.Signal, 4)
	downSignals := []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	if d.pid1 {
		downSignals = append(downSignals, syscall.SIGUSR2)
	}
	signal.Notify(stop, downSignals...)
	defer signal.Stop(stop)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go logHealth(ctx, log, d.health)

	var tracker supervisor.Tracker
	if d.pid1 {
		r := boot.NewReaper(d.flags.reapGrace)
		tracker = r
		go r.Run(ctx, log.With("component", "reaper"))
	}
	sup, err := supervisor.New(log.With("component", "supervisor"), d.metrics, time.Now,
		supervisor.Options{Policy: d.policy, Warnings: d.health, Tracker: tracker})
	if err != nil {
		log.Error("supervisor", "err", err)
		return d.fatal(2)
	}
	d.sup = sup

	cfg, cerr := loadConfig(log, d.path)
	if cerr != nil {
		log.Error("could not load the configuration at start", "err", cerr)
	}
	if d.pid1 {
		d.configureSystem(ctx, cfg)
	}
	// Armed before the first apply: an apply that hangs must reboot the
	// box too.
	var beat *watchdog.Heart
	if d.wd = d.openWatchdog(cfg); d.wd != nil {
		beat = d.wd.Heart("main loop", 30*time.Second)
		d.wd.Check("services", sup.Healthy)
		go d.wd.Run(ctx)
	}
	applied := false
	if cerr == nil {
		if err := applyConfig(ctx, log, d.box, d.path, cfg); err != nil {
			log.Error("could not apply the configuration at start", "err", err)
		} else {
			applied = true
		}
	}
	if !applied {
		if !d.pid1 {
			if d.wd != nil {
				d.wd.Disarm()
			}
			return 1
		}
		// The init never gives up: it keeps the box reachable (the
		// supervisor, the watchdog) and waits for a config (SIGHUP; later
		// the NOC's push).
		d.health.Raise("daemon", "config-not-applied", health.Critical,
			"The box has no working configuration and does not route. Send it a valid configuration.")
	}

	for _, s := range d.extra {
		if err := sup.Add(s); err != nil {
			log.Error("service not supervised", "err", err)
		}
	}
	if applied {
		d.startBoxServices()
	}
	// In the background, so a signal during a slow start is handled at
	// once (Stop interrupts Start).
	go func() {
		if err := sup.Start(ctx); err != nil {
			log.Warn("supervisor start interrupted", "err", err)
		}
	}()

	log.Info("running", "configured", applied)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case s := <-stop:
			return d.shutdown(s)
		case <-hup:
			log.Info("SIGHUP: re-reading the configuration", "config", d.path)
			cfg, err := loadConfig(log, d.path)
			if err == nil {
				err = applyConfig(ctx, log, d.box, d.path, cfg)
			}
			if err != nil {
				log.Error("new configuration not applied; the running one is kept", "err", err)
				continue
			}
			d.health.Clear("config-not-applied")
			if d.pid1 {
				if err := boot.SetHostname(cfg.Identity.Hostname); err != nil {
					log.Error("hostname", "err", err)
				}
			}
			d.startBoxServices()
		case <-tick.C:
			if beat != nil {
				beat.Beat()
			}
		}
	}
}

// startBoxServices hands the box's services to the supervisor, once: they
// start after the first successful apply.
func (d *daemon) startBoxServices() {
	if d.servicesStarted {
		return
	}
	d.servicesStarted = true
	for _, s := range d.box.Services() {
		if err := d.sup.Add(supervisor.Spec{Name: s.Name(), Run: s.Run}); err != nil {
			d.log.Error("service not supervised", "service", s.Name(), "err", err)
		}
	}
}

// configureSystem does the boot steps that follow the config: host name,
// lo, the board's kernel modules, sysctls. Without a config the box still
// gets lo and the sysctls.
func (d *daemon) configureSystem(ctx context.Context, cfg *config.Config) {
	sys := boot.System{Hostname: "passerelle"}
	if cfg != nil {
		sys.Hostname = cfg.Identity.Hostname
		if b := boardOf(cfg); b != nil {
			sys.Modules = b.Modules
		}
	}
	boot.Configure(ctx, d.log.With("component", "boot"), d.health, sys, d.flags.bootOptions())
}

func boardOf(cfg *config.Config) *board.Board {
	if cfg == nil || cfg.Board == "" {
		return nil
	}
	b, err := board.Lookup(cfg.Board)
	if err != nil {
		return nil
	}
	return b
}

// openWatchdog arms the watchdog named by --watchdog-device, or as PID 1
// the board's. An ordinary process never arms the board's: it would
// reboot a developer's machine.
func (d *daemon) openWatchdog(cfg *config.Config) *watchdog.Watchdog {
	dev, timeout := d.flags.watchdogDevice, d.flags.watchdogTimeout
	if dev == "" && d.pid1 {
		if b := boardOf(cfg); b != nil && b.Watchdog != nil {
			dev = b.Watchdog.Device
			if timeout == 0 {
				timeout = b.Watchdog.Timeout
			}
		}
	}
	if dev == "" {
		return nil
	}
	log := d.log.With("component", "watchdog")
	wdev, err := watchdog.Open(log, dev, timeout)
	if err != nil {
		log.Error("watchdog not armed", "err", err)
		d.health.Raise("watchdog", "watchdog-unavailable", health.Warn,
			"The hardware watchdog could not be armed: a hung box would not restart by itself.")
		return nil
	}
	interval := timeout / 3
	if interval <= 0 || interval > 10*time.Second {
		interval = min(10*time.Second, max(timeout/3, time.Second))
	}
	return watchdog.New(log, wdev, time.Now, interval)
}

// shutdown stops the box for the signal received: an ordinary process
// exits; PID 1 reboots (SIGTERM, SIGINT) or powers off (SIGUSR2).
func (d *daemon) shutdown(s os.Signal) int {
	action := power.Exit
	if d.pid1 {
		action = power.Reboot
		if s == syscall.SIGUSR2 {
			action = power.PowerOff
		}
	}
	d.log.Info("stopping", "reason", "signal", "signal", s.String(), "action", action.String())
	plan := power.Plan{Action: action, Deadline: d.flags.shutdownDeadline}
	if d.wd != nil {
		plan.Before = append(plan.Before, d.wd.Disarm)
	}
	if d.pid1 {
		plan.Unmount = []string{d.flags.permDir}
	}
	err := power.Shutdown(context.Background(), d.log, d.sup, power.Linux{Unmounter: boot.UnmountPerm}, plan)
	if action == power.Exit {
		if err != nil {
			d.log.Error("stopped with errors", "err", err)
		}
		return 0
	}
	d.log.Error("could not "+action.String(), "err", err)
	return d.fatal(1)
}

// fatal ends the daemon. PID 1 must not just exit (the kernel panics):
// it reboots if it can.
func (d *daemon) fatal(code int) int {
	if d.pid1 {
		d.log.Error("init cannot go on; rebooting")
		power.Linux{}.Sync()
		if err := (power.Linux{}).Reboot(power.Reboot); err != nil {
			d.log.Error("reboot failed", "err", err)
		}
	}
	return code
}

// logHealth logs every warning raised or cleared, so the console and the
// logs say what the status page shows.
func logHealth(ctx context.Context, log *slog.Logger, h *health.Registry) {
	ch, stop := h.Watch()
	defer stop()
	prev := map[string]health.Warning{}
	for {
		cur := map[string]health.Warning{}
		for _, w := range h.List() {
			cur[w.Code] = w
			if old, ok := prev[w.Code]; !ok || old.Severity != w.Severity || old.Message != w.Message {
				log.Warn("health warning raised", "code", w.Code, "severity", w.Severity.String(), "component", w.Component, "message", w.Message)
			}
		}
		for code := range prev {
			if _, ok := cur[code]; !ok {
				log.Info("health warning cleared", "code", code)
			}
		}
		prev = cur
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// serviceFile is one entry of the --services file.
type serviceFile struct {
	Name      string   `yaml:"name"`
	Command   []string `yaml:"command"`
	Env       []string `yaml:"env"`
	Dir       string   `yaml:"dir"`
	ReadyFile string   `yaml:"ready_file"`
	Critical  bool     `yaml:"critical"`
}

// loadServices reads the --services file: a YAML list of commands to
// supervise, strictly decoded.
func loadServices(path string) ([]supervisor.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--services: %w", err)
	}
	return parseServices(path, data)
}

func parseServices(path string, data []byte) ([]supervisor.Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var list []serviceFile
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []supervisor.Spec
	seen := map[string]bool{}
	for i, s := range list {
		where := fmt.Sprintf("%s: services[%d]", path, i)
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("%s: name is required", where)
		case seen[s.Name]:
			return nil, fmt.Errorf("%s: name %q used twice", where, s.Name)
		case len(s.Command) == 0:
			return nil, fmt.Errorf("%s (%s): command is required", where, s.Name)
		case !filepath.IsAbs(s.Command[0]):
			return nil, fmt.Errorf("%s (%s): command %q must start with an absolute path", where, s.Name, s.Command[0])
		case s.ReadyFile != "" && !filepath.IsAbs(s.ReadyFile):
			return nil, fmt.Errorf("%s (%s): ready_file %q must be an absolute path", where, s.Name, s.ReadyFile)
		}
		seen[s.Name] = true
		spec := supervisor.Spec{
			Name:     s.Name,
			Command:  &supervisor.Command{Path: s.Command[0], Args: s.Command[1:], Env: s.Env, Dir: s.Dir},
			Critical: s.Critical,
		}
		if s.Env != nil {
			spec.Command.Env = append(os.Environ(), s.Env...)
		}
		if f := s.ReadyFile; f != "" {
			spec.Ready = func(context.Context) error {
				_, err := os.Stat(f)
				return err
			}
		}
		out = append(out, spec)
	}
	return out, nil
}

// boxDeps is what the components share with the daemon: where state is
// kept, the metrics and warnings registries, and the system clock when the
// box owns it. `passerelle plan` passes none.
type boxDeps struct {
	leaseDir string
	metrics  prometheus.Registerer
	health   *health.Registry
	clock    timesync.Clock
}

// newBox composes the box's components in apply order.
func newBox(log *slog.Logger, deps ...boxDeps) *box.Box {
	var d boxDeps
	if len(deps) > 0 {
		d = deps[0]
	}
	dhcpOpts := dhcpd.Options{LeaseDir: d.leaseDir}
	timeOpts := timesync.Options{Clock: d.clock}
	var ifWarn netif.Warnings
	var upOpts uplink.Options
	fw := firewall.New(log.With("component", "firewall"), d.metrics, nil)
	// The DNS filter hands the firewall the DoH addresses to drop.
	dnsOpts := dnsfilter.Options{Log: log.With("component", "dns"), Registerer: d.metrics, Blocker: fw}
	if d.health != nil { // a nil *Registry in the interface would not be nil
		dhcpOpts.Health, timeOpts.Health = d.health, d.health
		dnsOpts.Warnings = d.health
		ifWarn = d.health
		upOpts.Warnings = d.health
	}
	return box.New(log,
		netif.New(log.With("component", "interfaces"), ifWarn),
		// Default routing needs the interfaces and their addresses.
		uplink.New(log.With("component", "uplinks"), d.metrics, upOpts),
		fw,
		dnsfilter.New(dnsOpts),
		dhcpd.New(log.With("component", "dhcp"), d.metrics, dhcpOpts),
		timesync.New(log.With("component", "time"), d.metrics, timeOpts),
	)
}

// ownsClock decides whether the firmware sets the system clock. Only the
// board's init does: the lab and tests run the daemon in namespaces that
// share the host's clock, which it must never step.
func ownsClock(mode string) (bool, error) {
	switch mode {
	case "auto":
		return os.Getpid() == 1, nil
	case "always":
		return true, nil
	case "never":
		return false, nil
	}
	return false, fmt.Errorf("--set-clock: expected auto, always or never, got %q", mode)
}

// loadAndApply reads, validates and applies one configuration file. A
// config with errors is never applied; every problem is logged.
func loadAndApply(ctx context.Context, log *slog.Logger, b *box.Box, path string) error {
	cfg, err := loadConfig(log, path)
	if err != nil {
		return err
	}
	return applyConfig(ctx, log, b, path, cfg)
}

// loadConfig reads and validates one configuration file, logging every
// problem.
func loadConfig(log *slog.Logger, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				log.Error("configuration problem", "problem", e.Error())
			}
			return nil, fmt.Errorf("%s: %d problem(s) in the configuration", path, len(list))
		}
		return nil, err
	}
	return cfg, nil
}

// applyConfig applies a loaded configuration and logs the report.
func applyConfig(ctx context.Context, log *slog.Logger, b *box.Box, path string, cfg *config.Config) error {
	rep, err := b.Apply(ctx, cfg)
	for _, r := range rep.Results {
		if r.Err != nil {
			log.Error("component failed", "component", r.Component, "took", r.Took, "err", r.Err)
		} else {
			log.Info("component applied", "component", r.Component, "took", r.Took)
		}
	}
	if rep.RolledBack {
		log.Warn("previous configuration restored", "err", rep.RollbackErr)
	}
	if err != nil {
		return err
	}
	log.Info("configuration applied", "config", path, "uai", cfg.Identity.UAI, "school", cfg.Identity.Name)
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: expected text or json, got %q", format)
}
