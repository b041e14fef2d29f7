package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"passerelle/board"
	"passerelle/pkg/boot"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/power"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/watchdog"
)

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
		d.c.health.Raise("watchdog", "watchdog-unavailable", health.Warn,
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
	// First, while /perm is mounted: a bundle inside its confirm window
	// is neither committed nor rolled back on the way down, and the
	// pending marker says the box stopped in order (the next boot rolls
	// back and says why).
	if d.mg.mgr != nil {
		d.mg.mgr.Stop(action.String())
	}
	plan := power.Plan{Action: action, Deadline: d.flags.shutdownDeadline}
	if d.wd != nil {
		plan.Before = append(plan.Before, d.wd.Disarm)
	}
	plan.Before = append(plan.Before, d.onShutdown...)
	if d.pid1 {
		plan.Unmount = []string{d.flags.permDir}
	}
	err := power.Shutdown(context.Background(), d.log, d.c.sup, power.Linux{Unmounter: boot.UnmountPerm}, plan)
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
