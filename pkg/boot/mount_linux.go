package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"passerelle/pkg/health"

	"golang.org/x/sys/unix"
)

// Options locate what the early boot works on. The zero value is the
// board's layout.
type Options struct {
	// PermDevice is the persistent partition: a block device, or a
	// filesystem image file (attached to a loop device; the lab and
	// tests use one). Empty finds the partition named "perm" (GPT
	// partition name) in /sys/class/block.
	PermDevice string
	// PermDir is where it is mounted; default /perm.
	PermDir string
	// StepTimeout bounds each step but the /perm repair; default 30 s.
	StepTimeout time.Duration
	// RepairTimeout bounds the /perm recovery (fsck, mkfs); default 10 min.
	RepairTimeout time.Duration
	// FsckPath and MkfsPath name the ext4 tools; default e2fsck and
	// mkfs.ext4 found in PATH.
	FsckPath, MkfsPath string
}

func (o *Options) defaults() {
	if o.PermDir == "" {
		o.PermDir = "/perm"
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 30 * time.Second
	}
	if o.RepairTimeout <= 0 {
		o.RepairTimeout = 10 * time.Minute
	}
	if o.FsckPath == "" {
		o.FsckPath = "e2fsck"
	}
	if o.MkfsPath == "" {
		o.MkfsPath = "mkfs.ext4"
	}
}

// defaultPath is the PATH a PID 1 gets when the kernel passes none, so
// the filesystem tools can be found.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Early runs the boot steps that need no configuration: the kernel
// filesystems, then /perm. Only PID 1 may call it.
func Early(ctx context.Context, log *slog.Logger, w *health.Registry, opts Options) Report {
	opts.defaults()
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", defaultPath)
	}
	var rep Report
	rep = append(rep, runStep(ctx, log, "mounts", opts.StepTimeout, func(context.Context) (string, error) {
		return mountAll(log, Mounts())
	}))
	rep = append(rep, runStep(ctx, log, "perm", opts.RepairTimeout, func(ctx context.Context) (string, error) {
		out, err := MountPerm(ctx, log, w, opts)
		return out.String(), err
	}))
	return rep
}

// mountAll makes the root mount private first, so nothing mounted here
// propagates to another mount namespace (a test's host, a container's
// parent), then mounts everything.
func mountAll(log *slog.Logger, want []Mount) (string, error) {
	var errs []error
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		errs = append(errs, fmt.Errorf("make / private: %w", err))
	}
	var done []string
	for _, m := range want {
		if err := mountOne(m); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, m.Target)
		log.Debug("mounted", "target", m.Target, "type", m.FSType, "options", m.Options())
	}
	return "mounted " + strings.Join(done, " "), errors.Join(errs...)
}

func mountOne(m Mount) error {
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	var flags uintptr
	if m.NoSuid {
		flags |= unix.MS_NOSUID
	}
	if m.NoDev {
		flags |= unix.MS_NODEV
	}
	if m.NoExec {
		flags |= unix.MS_NOEXEC
	}
	err := unix.Mount(m.Source, m.Target, m.FSType, flags, m.Data)
	if errors.Is(err, unix.EBUSY) {
		// devtmpfs is one instance: the kernel refuses to stack it on
		// itself (it mounted it already, CONFIG_DEVTMPFS_MOUNT). Give the
		// existing mount our flags instead.
		err = unix.Mount("", m.Target, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err)
	}
	return nil
}
