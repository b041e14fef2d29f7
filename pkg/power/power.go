// Package power ends the box's life in order: stop the services (reverse
// start order, SIGTERM then SIGKILL at a deadline), disarm the watchdog,
// end the processes nobody supervises, sync, unmount /perm, then reboot
// or power off. As PID 1 the daemon calls it on SIGTERM (reboot) and
// SIGUSR2 (power off), as gokrazy does; the management API will call the
// same function.
//
// The sequence is pure and tested with fakes; the system calls are in
// power_linux.go.
package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Action is how the box goes down.
type Action int

const (
	// Exit stops the services and returns: the daemon is an ordinary
	// process (lab, development) and must not reboot the machine.
	Exit Action = iota
	Reboot
	PowerOff
)

func (a Action) String() string {
	switch a {
	case Exit:
		return "exit"
	case Reboot:
		return "reboot"
	case PowerOff:
		return "power off"
	}
	return "unknown"
}

// Services is what runs on the box (the supervisor).
type Services interface {
	Stop(ctx context.Context) error
}

// System is the kernel side of a shutdown.
type System interface {
	// KillAll ends every process but the caller: SIGTERM, then SIGKILL
	// once grace has passed or they are all gone.
	KillAll(ctx context.Context, grace time.Duration) error
	Sync()
	Unmount(dir string) error
	// Reboot does not return when it works.
	Reboot(a Action) error
}

// Plan says what one shutdown does.
type Plan struct {
	Action Action
	// Deadline bounds stopping the services; what is left after it is
	// killed.
	Deadline time.Duration
	// Before run after the services stopped, before the end (disarm the
	// watchdog: a hang from here on is bounded by Deadline only).
	Before []func() error
	// Unmount lists the filesystems to unmount (/perm).
	Unmount []string
}

// Shutdown runs the plan and, unless Action is Exit, ends with reboot(2).
// Every step runs even if an earlier one failed: a box that cannot stop a
// service cleanly must still reboot. It returns only for Exit, or if the
// reboot itself failed.
func Shutdown(ctx context.Context, log *slog.Logger, svc Services, sys System, p Plan) error {
	start := time.Now()
	log.Info("shutting down", "action", p.Action.String(), "deadline", p.Deadline)
	var errs []error
	sctx, cancel := context.WithTimeout(ctx, p.Deadline)
	if svc != nil {
		if err := svc.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("stop services: %w", err))
		}
	}
	cancel()
	log.Info("services stopped", "took", time.Since(start).Round(time.Millisecond))
	for _, f := range p.Before {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Action == Exit {
		return errors.Join(errs...)
	}
	// Orphans and anything unsupervised may hold /perm open.
	if err := sys.KillAll(ctx, 2*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("end remaining processes: %w", err))
	}
	sys.Sync()
	for _, d := range p.Unmount {
		if err := sys.Unmount(d); err != nil {
			errs = append(errs, err)
		}
	}
	sys.Sync()
	if err := errors.Join(errs...); err != nil {
		log.Error("shutdown steps failed; going on", "err", err)
	}
	log.Info("goodbye", "event", "shutdown", "action", p.Action.String(), "took", time.Since(start).Round(time.Millisecond))
	if err := sys.Reboot(p.Action); err != nil {
		return fmt.Errorf("%s: %w", p.Action, err)
	}
	return nil
}
