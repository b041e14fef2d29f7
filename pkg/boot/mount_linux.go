package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"passerelle/board"
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
	// PermWait bounds the wait for the partition to appear; default the
	// board's perm_wait, else 10 s.
	PermWait time.Duration
	// Board is the board of the image; default the name in
	// ImageBoardFile, if the image has one. The early boot loads its
	// modules and names its interfaces before /perm: the config, which
	// names the board too, is on /perm.
	Board string
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
	if o.PermWait <= 0 {
		o.PermWait = 10 * time.Second
	}
}

// defaultPath is the PATH a PID 1 gets when the kernel passes none, so
// the filesystem tools can be found.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImageBoardFile names the board an image was built for (tools/mkimage
// writes it): the early boot needs the board before the config is
// readable.
const ImageBoardFile = "/etc/passerelle/board"

// Early runs the boot steps that need no configuration: the kernel
// filesystems; then, when the image names its board, the board's kernel
// modules (storage and ext4 first: on a distribution kernel they are
// modules, and /perm is on that storage), the interface names and the
// power key; then /perm. Only PID 1 may call it.
func Early(ctx context.Context, log *slog.Logger, w *health.Registry, opts Options) Report {
	b := imageBoard(log, opts.Board)
	if b != nil && opts.PermWait <= 0 {
		opts.PermWait = b.PermWait
	}
	opts.defaults()
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", defaultPath)
	}
	var rep Report
	rep = append(rep, runStep(ctx, log, "mounts", opts.StepTimeout, func(context.Context) (string, error) {
		return mountAll(log, Mounts())
	}))
	if b != nil {
		rep = append(rep, runStep(ctx, log, "modules", opts.StepTimeout, func(context.Context) (string, error) {
			note, err := loadModules(log, SystemSetup{Modules: b.AllModules()})
			if err != nil {
				w.Raise("boot", WarnModules, health.Warn, "Some kernel modules of the board could not be loaded: "+err.Error())
			}
			return note, err
		}))
		rep = append(rep, runStep(ctx, log, "ifnames", opts.StepTimeout, func(context.Context) (string, error) {
			note, err := NameInterfaces(log, b.Interfaces)
			if err != nil {
				w.Raise("boot", WarnInterfaceNames, health.Warn, "Some network ports could not be given their names: "+err.Error())
			}
			return note, err
		}))
		rep = append(rep, runStep(ctx, log, "powerkey", opts.StepTimeout, func(context.Context) (string, error) {
			return WatchPowerKey(log)
		}))
	}
	rep = append(rep, runStep(ctx, log, "perm", opts.RepairTimeout+opts.PermWait, func(ctx context.Context) (string, error) {
		out, err := MountPerm(ctx, log, w, opts)
		note := out.String()
		if out != PermVolatile {
			n, cerr := countBoot(opts.PermDir)
			if cerr != nil {
				log.Warn("boot count not kept", "err", cerr)
			}
			note = fmt.Sprintf("%s; boot %d on it", note, n)
			log.Info("persistent partition ready", "event", EvPermReady, "outcome", out.Key(), "boots", n)
		} else {
			log.Info("persistent partition ready", "event", EvPermReady, "outcome", out.Key(), "boots", 0)
		}
		return note, err
	}))
	return rep
}

// imageBoard returns the named board, or the one of ImageBoardFile, or
// nil (the lab and tests run from no image).
func imageBoard(log *slog.Logger, name string) *board.Board {
	if name == "" {
		data, err := os.ReadFile(ImageBoardFile)
		if err != nil {
			return nil
		}
		name = strings.TrimSpace(string(data))
	}
	b, err := board.Lookup(name)
	if err != nil {
		log.Error("image board unknown: no modules loaded before /perm", "board", name, "err", err)
		return nil
	}
	return b
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
