package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"passerelle/pkg/boot"
	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/slots"
	"passerelle/pkg/update"
	"passerelle/pkg/version"
)

// The A/B system slots (issue 18, pkg/slots): as PID 1 the daemon reads
// which slot booted; on a trial boot it writes the trial record right
// after /perm is mounted, then runs the configuration push's health gate
// once the box runs, and commits the slot or records why not and
// restarts into the committed one.

// Events of the fault hook.
const evFaultInjected = "fault-injected" // fault: exit, hang or unhealthy (with interfaces)

// faultPath is the TEST HOOK of the image builder (tools/mkimage -fault):
// present only in the bad update slots that integration/qemu_test.go
// builds, it makes PID 1 exit (a crash: the kernel panics and restarts),
// hang with the watchdog armed and never kicked, or run normally on a box
// that cannot reach its uplinks ("unhealthy": see cutUplinks), so the
// health gate fails. Read only by PID 1, only when it exists.
const faultPath = "/etc/passerelle/fault"

// faultTable is the test hook's own nftables table ("unhealthy"): not
// the firewall's, which replaces only its own table and so leaves it be.
const faultTable = "passerelle-fault"

// slotState is the daemon's part of the slots; s is nil unless PID 1.
type slotState struct {
	s     *slots.Slots
	trial bool   // this boot is a trial: the gate decides
	fault string // the test hook's fault, "" on every real image
}

// setupSlots settles the slots' records at boot (right after /perm and
// the composition: the metrics registry). A trial boot of a test image
// with fault "exit" stops here.
func (d *daemon) setupSlots() {
	if !d.pid1 {
		return
	}
	s, err := slots.New(box.Deps{Log: d.log, Metrics: d.c.metrics, Health: d.c.health},
		slots.Options{Dir: filepath.Join(d.flags.permDir, "slots"), Version: version.Version})
	if err != nil {
		d.log.Error("system slots unavailable", "err", err)
		return
	}
	d.sl = slotState{s: s, trial: s.Start()}
	if b, err := s.Booted(); err == nil {
		note := "committed"
		if b.Trying {
			note = "on trial: the health gate decides"
		}
		d.keepBootReport("slots", boot.Report{{Name: "slot", Note: strings.ToUpper(b.Slot) + ", " + note}})
	}
	if data, err := os.ReadFile(faultPath); err == nil {
		d.sl.fault = strings.TrimSpace(string(data))
		d.log.Warn("TEST IMAGE: fault injection", "event", evFaultInjected, "fault", d.sl.fault, "file", faultPath)
		if d.sl.fault == "exit" {
			os.Exit(3) // PID 1 exits: the kernel panics, panic=-1 restarts the box
		}
	}
}

// hangIfAsked is the test hook's "hang": called once the watchdog is
// armed and before anything kicks it, it never returns, so the watchdog
// restarts the box.
func (d *daemon) hangIfAsked() {
	if d.sl.fault != "hang" {
		return
	}
	d.log.Warn("TEST IMAGE: hanging with the watchdog armed", "event", evFaultInjected, "fault", "hang", "watchdog", d.wd != nil)
	for {
		time.Sleep(time.Hour) // a timer, so the runtime never sees a deadlock and exits
	}
}

// unhealthyIfAsked is the test hook's "unhealthy": called with the
// starting configuration before its first apply, so the uplinks never get
// an answer (see cutUplinks); the daemon then runs as usual.
func (d *daemon) unhealthyIfAsked(cfg *config.Config) {
	if d.sl.fault != "unhealthy" || cfg == nil {
		return
	}
	ifs := make([]string, 0, len(cfg.Uplinks))
	for _, u := range cfg.Uplinks {
		ifs = append(ifs, u.Interface)
	}
	if err := cutUplinks(ifs); err != nil {
		d.log.Error("TEST IMAGE: the unhealthy fault could not be set up", "err", err)
		return
	}
	d.log.Warn("TEST IMAGE: nothing the box sends leaves through its uplinks", "event", evFaultInjected,
		"fault", "unhealthy", "interfaces", ifs)
}

// slotGate runs on a trial boot once the daemon runs: the same probes
// as a pushed configuration's gate (uplink online, DNS self-test, tunnel
// and NOC when configured, no critical warning), within the
// configuration's confirm window. Passed: the slot is committed. Not:
// the reason is recorded and the box restarts into the committed slot
// (the boot loader already cleared the trial).
func (d *daemon) slotGate(ctx context.Context, cfg *config.Config, applied bool) {
	if !d.sl.trial {
		return
	}
	s := d.sl.s
	fail := func(reason, detail string) {
		if err := s.Abandon(reason, detail); err != nil {
			d.log.Error("could not record the abandoned slot", "err", err)
		}
		d.log.Warn("restarting into the committed slot")
		syscall.Kill(os.Getpid(), syscall.SIGTERM) // the orderly reboot of the main loop
	}
	if !applied || cfg == nil {
		fail(slots.ReasonBootFail, "its configuration could not be applied")
		return
	}
	win := cfg.Management.ConfirmTimeout.D()
	if d.mg.confirm > 0 {
		win = d.mg.confirm
	}
	probes := d.mg.probes
	if probes == nil {
		probes = d.gateProbes(nil)
	}
	d.log.Info("health gate of the trial slot", "window", win.String(), "probes", len(probes))
	// The health probe's baseline is the good slot's critical warnings
	// when it asked for the trial, not this boot's: a critical warning
	// the new system raised fails it.
	befores := make([]any, len(probes))
	for i, p := range probes {
		if p.Name == manage.HealthProbe(nil).Name {
			befores[i] = s.KnownCritical()
		}
	}
	why, err := manage.RunGate(ctx, manage.GateOptions{Probes: probes, Window: win, Hold: min(win/3, 30*time.Second), Log: d.log},
		cfg, befores)
	if err != nil {
		return // shutting down: no decision, the next boot is the committed slot
	}
	if why != "" {
		fail(slots.ReasonGate, "gate failed: "+why)
		return
	}
	if err := s.Commit(); err != nil {
		d.c.health.Raise("slots", "slot-commit-failed", health.Critical,
			fmt.Sprintf("The new system passed its health gate but could not be committed: %v", err))
		fail(slots.ReasonBootFail, "the health gate passed but the commit failed: "+err.Error())
	}
}

// cutUplinks is the test hook's "unhealthy": a table of its own whose
// output chain drops every packet the box sends through the uplinks'
// interfaces, as a new system whose firewall or routing were broken: the
// kernel refuses the uplinks' probes (EPERM) and DHCP renewals, so the
// uplinks go offline and the health gate's uplinks probe fails, for a real reason,
// while the daemon itself runs normally. The table lives until the
// restart into the committed slot.
func cutUplinks(ifaces []string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("fault hook: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: faultTable})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, name := range ifaces {
		b := make([]byte, unix.IFNAMSIZ) // the kernel's name, zero padded: an exact match
		copy(b, name)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fault hook: table %s: %w", faultTable, err)
	}
	return nil
}

// The image's slots are the update service's target (pkg/update declares
// the seam; pkg/slots implements it).
var (
	_ update.Target    = (*slots.Slots)(nil)
	_ update.Discarder = (*slots.Slots)(nil)
)
