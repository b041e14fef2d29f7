package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"passerelle/pkg/boot"
	"passerelle/pkg/dhcpd"
	"passerelle/pkg/health"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/timesync"
	"passerelle/pkg/version"
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
	tunnelDir := fs.String("tunnel-run-dir", "", "tailscaled's config, LocalAPI socket and logs (default /run/passerelle/tunnel)")
	memLimit := fs.String("memory-limit", "auto", "soft memory limit of the Go runtime: auto (half of MemTotal, unless GOMEMLIMIT is set), off, or a size such as 256MiB")
	setClock := fs.String("set-clock", "auto", "whether the box sets the system clock from NTP: auto (only when running as init, PID 1, i.e. on the board), always or never")
	var initf initFlags
	initf.register(fs)
	var managef manageFlags
	managef.register(fs)
	var statusf statusFlags
	statusf.register(fs)
	var updatef updateFlags
	updatef.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle run: expected --config FILE\n%s", usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "passerelle run: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		return fail(err)
	}
	policy, err := initf.policy()
	if err != nil {
		return fail(err)
	}
	var extra []supervisor.Spec
	if initf.services != "" {
		if extra, err = loadServices(initf.services); err != nil {
			return fail(err)
		}
	}
	owns, err := ownsClock(*setClock)
	if err != nil {
		return fail(err)
	}

	pid1 := os.Getpid() == 1
	log.Info("starting", "version", version.String(), "config", *path, "pid", os.Getpid(), "init", pid1)
	h := health.New(time.Now)
	var early boot.Report
	if pid1 {
		// Before anything reads a file: /perm holds the config.
		early = boot.Early(context.Background(), log.With("component", "boot"), h, initf.bootOptions())
	}
	// After /perm is mounted: the persistent log lives there.
	log, ring := withEventLog(log, statusf.dir(statusf.eventLogDir, initf.permDir, "log"))
	// Once /proc is there, before any component opens a socket: the file
	// limit and the memory budget (limits.go, issue 12).
	raiseFileLimit(log)
	if err := setMemoryLimit(log, *memLimit); err != nil {
		return fail(err)
	}
	opts := composeOptions{pid1: pid1, boot: initf.bootOptions(), leaseDir: *leaseDir, policy: policy, health: h, tunnel: *tunnelDir}
	if owns {
		opts.clock = timesync.SystemClock{}
	}
	var reaper *boot.Reaper
	if pid1 {
		reaper = boot.NewReaper(initf.reapGrace)
		opts.tracker = reaper
	}
	log.Info("clock", "set_by_firmware", owns)
	c, err := compose(log, opts)
	if err != nil {
		log.Error("could not compose the box", "err", err)
		return 2
	}
	d := &daemon{log: log, pid1: pid1, path: *path, c: c, flags: initf, extra: extra}
	d.keepBootReport("early", early)
	// Right after /perm: a trial slot's record must exist before anything
	// that could crash or hang.
	d.setupSlots()
	if err := d.setupManage(managef); err != nil {
		// Never fatal: the box runs its configuration without the NOC's push.
		log.Error("NOC configuration push off: its generations cannot be opened", "err", err)
	}
	if err := d.setupUpdate(updatef); err != nil {
		log.Error("firmware updates off: their results cannot be kept", "err", err)
	}
	defer startStatus(d, statusf, ring)()
	if reaper != nil {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go reaper.Run(ctx, log.With("component", "reaper"))
	}
	return d.run()
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
