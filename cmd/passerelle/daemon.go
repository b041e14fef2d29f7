package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"passerelle/pkg/boot"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/watchdog"
)

// Structured events: the "event" attribute of the daemon's log records
// that tests, the status page and tools wait on (docs/architecture.md
// lists them all). The message next to them is for people and may change.
const (
	evRunning        = "daemon-running"  // configured=bool
	evConfigApplied  = "config-applied"  // source, uai, took
	evConfigRejected = "config-rejected" // source, err
	evConfigReload   = "config-reload"   // SIGHUP received
	evHealthRaised   = "health-raised"   // code, severity, component
	evHealthCleared  = "health-cleared"  // code
)

// Where a configuration comes from: every one goes through submit.
const (
	sourceStart  = "start"  // the file at start-up
	sourceSIGHUP = "sighup" // the file, re-read on SIGHUP
)

// codeNoConfig is the warning of an init that has no working configuration.
const codeNoConfig = "config-not-applied"

// daemon is one run of the box.
type daemon struct {
	log   *slog.Logger
	pid1  bool
	path  string
	c     *composition
	flags initFlags
	extra []supervisor.Spec
	mg    manageState // the NOC's bundles (manage.go)
	up    updateState // firmware updates (update.go)
	sl    slotState   // the A/B system slots (slots.go)
	// cert is the box's TLS certificate (the status page's, made at
	// first boot on /perm): the management API serves it too.
	cert func() (tls.Certificate, error)
	// certInstall installs a certificate the NOC pushed (the status
	// page's holder): served at once by the page and the API.
	certInstall manage.CertInstaller

	wd *watchdog.Watchdog

	mu              sync.Mutex // submit is serial: SIGHUP now, NOC push later
	servicesStarted bool
	bootReports     []bootReport

	// The technician's view (statuspage.go): the running
	// configuration's record, and what to close before /perm is
	// unmounted.
	applied    appliedState
	onShutdown []func() error
}

// bootReport is one boot phase's report, kept for the status page.
type bootReport struct {
	Phase  string
	Report boot.Report
}

// BootReports returns the reports of the boot phases so far.
func (d *daemon) BootReports() []bootReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bootReport(nil), d.bootReports...)
}

func (d *daemon) keepBootReport(phase string, r boot.Report) {
	if len(r) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bootReports = append(d.bootReports, bootReport{Phase: phase, Report: r})
}

// submit is the one path by which a configuration becomes the running one:
// at start, on SIGHUP and (later) from the NOC. The box plans every
// component (nothing is touched if one cannot), applies them in order and
// restores the previous configuration if one fails. After the first
// success the box's services start.
func (d *daemon) submit(ctx context.Context, cfg *config.Config, source string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	rep, err := d.c.box.Apply(ctx, cfg)
	for _, r := range rep.Results {
		if r.Err != nil {
			d.log.Error("component failed", "component", r.Component, "took", r.Took, "err", r.Err)
		} else {
			d.log.Info("component applied", "component", r.Component, "took", r.Took)
		}
	}
	if rep.RolledBack {
		d.log.Warn("previous configuration restored", "err", rep.RollbackErr)
	}
	if sys := d.c.system.Report(); len(sys) > 0 {
		d.bootReports = append(d.bootReports, bootReport{Phase: "system (" + source + ")", Report: sys})
	}
	d.noteApplied(source, err)
	if err != nil {
		d.log.Error("configuration not applied", "event", evConfigRejected, "source", source, "err", err)
		return err
	}
	d.log.Info("configuration applied", "event", evConfigApplied, "source", source, "config", d.path,
		"uai", cfg.Identity.UAI, "school", cfg.Identity.Name, "took", time.Since(start).Round(time.Millisecond))
	d.c.health.Clear(codeNoConfig)
	d.startBoxServices()
	return nil
}

// startBoxServices hands the box's services to the supervisor, once: they
// start after the first successful apply. Called with d.mu held.
func (d *daemon) startBoxServices() {
	if d.servicesStarted {
		return
	}
	d.servicesStarted = true
	for _, s := range d.c.box.Services() {
		if err := d.c.sup.Add(supervisor.Spec{Name: s.Name(), Run: s.Run}); err != nil {
			d.log.Error("service not supervised", "service", s.Name(), "err", err)
		}
	}
}

// run is the daemon's life: the first configuration, the supervisor, then
// signals until shutdown.
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
	go logHealth(ctx, log, d.c.health)

	cfg, text, cerr := d.loadStart()
	if cerr != nil {
		log.Error("could not load the configuration at start", "event", evConfigRejected, "source", sourceStart, "err", cerr)
		if d.pid1 {
			// No config: lo and the sysctls all the same, so the box
			// can be reached and repaired.
			if err := d.c.system.Apply(ctx, boot.DefaultSystemPlan()); err != nil {
				log.Error("system", "err", err)
			}
			d.keepBootReport("system (no configuration)", d.c.system.Report())
		}
	}
	// Armed before the first apply: an apply that hangs must reboot the
	// box too.
	var beat *watchdog.Heart
	if d.wd = d.openWatchdog(cfg); d.wd != nil {
		d.hangIfAsked() // the test images' hook; a no-op on every real one
		beat = d.wd.Heart("main loop", 30*time.Second)
		d.wd.Check("services", d.c.sup.Healthy)
		go d.wd.Run(ctx)
	}
	// The extra services first: the box's services, added at the first
	// successful apply, then stop before them (reverse order).
	for _, s := range d.extra {
		if err := d.c.sup.Add(s); err != nil {
			log.Error("service not supervised", "err", err)
		}
	}
	d.unhealthyIfAsked(cfg) // the test images' hook; a no-op on every real one
	applied := cerr == nil && d.submit(ctx, cfg, sourceStart) == nil
	if applied {
		d.manageRunning(cfg, text)
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
		d.c.health.Raise("daemon", codeNoConfig, health.Critical,
			"The box has no working configuration and does not route. Send it a valid configuration.")
	}

	// In the background, so a signal during a slow start is handled at
	// once (Stop interrupts Start).
	go func() {
		if err := d.c.sup.Start(ctx); err != nil {
			log.Warn("supervisor start interrupted", "err", err)
		}
	}()

	log.Info("running", "event", evRunning, "configured", applied)
	go d.slotGate(ctx, cfg, applied)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case s := <-stop:
			return d.shutdown(s)
		case <-hup:
			log.Info("SIGHUP: re-reading the configuration", "event", evConfigReload, "config", d.path)
			cfg, err := loadConfig(log, d.path)
			if err != nil {
				log.Error("new configuration not applied; the running one is kept", "event", evConfigRejected, "source", sourceSIGHUP, "err", err)
				continue
			}
			if err := d.submit(ctx, cfg, sourceSIGHUP); err != nil {
				log.Error("new configuration not applied; the running one is kept", "err", err)
			} else {
				d.manageRunning(cfg, nil)
			}
		case <-tick.C:
			if beat != nil {
				beat.Beat()
			}
		}
	}
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
			return nil, fmt.Errorf("the configuration has problems: %w", list)
		}
		return nil, err
	}
	return cfg, nil
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
				log.Warn("health warning raised", "event", evHealthRaised, "code", w.Code, "severity", w.Severity.String(), "component", w.Component, "message", w.Message)
			}
		}
		for code := range prev {
			if _, ok := cur[code]; !ok {
				log.Info("health warning cleared", "event", evHealthCleared, "code", code)
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
