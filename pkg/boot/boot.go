// Package boot does what an init must do before the box can be
// configured, when the daemon runs as PID 1: mount the kernel's
// filesystems, mount (repairing or reformatting if need be) the persistent
// partition /perm, then, once the configuration is known, set the host
// name, bring up lo, load the board's kernel modules and set the sysctls
// the router needs. It also reaps orphans for as long as the daemon runs
// (reaper_linux.go).
//
// Every step logs its result and is bounded in time: a step that fails or
// hangs is reported and the boot goes on, because a box that boots half
// configured can still be reached and repaired from the NOC, and one stuck
// in its init cannot.
//
// The decisions (which mounts, which modules in which order, the /perm
// recovery sequence) are pure and tested without a kernel; the system
// calls are in the _linux.go files.
package boot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Health warning codes raised by the boot.
const (
	WarnPermRepaired    = "perm-repaired"
	WarnPermReformatted = "perm-reformatted"
	WarnPermVolatile    = "perm-unavailable"
	WarnModules         = "kernel-modules"
	WarnPermInitialised = "perm-initialised"
	WarnNoNFTables      = "nftables-unavailable"
	WarnInterfaceNames  = "interface-naming"
)

// Step is the outcome of one boot step.
type Step struct {
	Name string
	Note string // what was done, e.g. "mounted", "repaired", "5 loaded"
	Err  error
	Took time.Duration
}

// Report lists the steps of one boot phase, in order.
type Report []Step

// Err returns the first failed step's error, or nil.
func (r Report) Err() error {
	for _, s := range r {
		if s.Err != nil {
			return fmt.Errorf("%s: %w", s.Name, s.Err)
		}
	}
	return nil
}

func (r Report) String() string {
	var b strings.Builder
	for _, s := range r {
		status := "ok"
		if s.Err != nil {
			status = "FAILED: " + s.Err.Error()
		}
		fmt.Fprintf(&b, "%-10s %8s  %s", s.Name, s.Took.Round(time.Millisecond), status)
		if s.Note != "" {
			fmt.Fprintf(&b, " (%s)", s.Note)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// runStep runs fn with a timeout, logs the outcome and returns it. A step
// that does not return in time is abandoned (its goroutine may stay
// blocked in the kernel) so that the boot goes on.
func runStep(ctx context.Context, log *slog.Logger, name string, timeout time.Duration, fn func(ctx context.Context) (string, error)) Step {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		note string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		note, err := fn(ctx)
		ch <- result{note, err}
	}()
	var st Step
	select {
	case r := <-ch:
		st = Step{Name: name, Note: r.note, Err: r.err}
	case <-ctx.Done():
		st = Step{Name: name, Err: fmt.Errorf("no result after %s; boot continues without it", timeout)}
	}
	st.Took = time.Since(start)
	if st.Err != nil {
		log.Error("boot step failed", "step", name, "took", st.Took.Round(time.Millisecond), "err", st.Err)
	} else {
		log.Info("boot step done", "step", name, "took", st.Took.Round(time.Millisecond), "result", st.Note)
	}
	return st
}
