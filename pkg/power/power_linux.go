package power

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Linux is the real System. Only PID 1 may use it: KillAll signals every
// process of the PID namespace.
type Linux struct {
	// Unmounter unmounts one directory (pkg/boot's UnmountPerm, which
	// falls back to read-only); nil uses umount(2).
	Unmounter func(dir string) error
}

var errNotInit = errors.New("refusing: only PID 1 may do this")

// KillAll sends SIGTERM to every process but PID 1 (kill(-1)), reaps them
// until none is left or grace passes, then sends SIGKILL. The services are
// stopped by then, so reaping every child is safe.
func (l Linux) KillAll(ctx context.Context, grace time.Duration) error {
	if os.Getpid() != 1 {
		return errNotInit
	}
	if err := unix.Kill(-1, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("SIGTERM everyone: %w", err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if reapAll() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := unix.Kill(-1, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("SIGKILL everyone: %w", err)
	}
	for range 50 {
		if reapAll() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("processes left after SIGKILL")
}

// reapAll reaps every exited child and reports whether none is left. As
// PID 1 every process of the namespace descends from us, so no children
// means no processes.
func reapAll() bool {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return true
		}
		if err != nil || pid == 0 {
			return false
		}
	}
}

func (Linux) Sync() { unix.Sync() }

func (l Linux) Unmount(dir string) error {
	if l.Unmounter != nil {
		return l.Unmounter(dir)
	}
	if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// Reboot calls reboot(2). In a PID namespace other than the first, the
// kernel ends the namespace's init instead (SIGHUP for a restart, SIGINT
// for power off): that is how tests observe it.
func (Linux) Reboot(a Action) error {
	if os.Getpid() != 1 {
		return errNotInit
	}
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if a == PowerOff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	return unix.Reboot(cmd)
}
