package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"passerelle/pkg/health"
)

// PermOutcome is how /perm came up.
type PermOutcome int

const (
	// PermMounted: mounted as it was.
	PermMounted PermOutcome = iota
	// PermRepaired: mounted after fsck repaired it.
	PermRepaired
	// PermReformatted: fsck could not save it; reformatted, now empty.
	PermReformatted
	// PermVolatile: no usable partition; a tmpfs stands in and nothing
	// written survives a reboot.
	PermVolatile
)

func (o PermOutcome) String() string {
	switch o {
	case PermMounted:
		return "mounted"
	case PermRepaired:
		return "repaired and mounted"
	case PermReformatted:
		return "reformatted and mounted"
	case PermVolatile:
		return "unavailable; tmpfs in its place"
	}
	return "unknown"
}

// permOps are the system operations of the /perm recovery, behind an
// interface so the sequence is tested without disks.
type permOps interface {
	// resolve finds the device; release is called when the recovery is
	// over (it detaches nothing that is mounted).
	resolve(ctx context.Context) (dev string, release func(), err error)
	mount(dev, dir string) error
	fsck(ctx context.Context, dev string) error
	mkfs(ctx context.Context, dev string) error
	mountVolatile(dir string) error
}

// recoverPerm mounts /perm: as it is; else after a repair; else after a
// reformat; else a tmpfs. Whatever happens the box boots, and anything but
// a plain mount raises a warning the status page and the NOC see.
func recoverPerm(ctx context.Context, log *slog.Logger, w *health.Registry, ops permOps, dir string) (PermOutcome, error) {
	dev, release, err := ops.resolve(ctx)
	if err != nil {
		return volatile(log, w, ops, dir, fmt.Errorf("find the partition: %w", err))
	}
	defer release()
	log = log.With("device", dev, "dir", dir)
	merr := ops.mount(dev, dir)
	if merr == nil {
		return PermMounted, nil
	}
	log.Warn("persistent partition does not mount; checking it", "err", merr)
	ferr := ops.fsck(ctx, dev)
	if ferr == nil {
		if merr = ops.mount(dev, dir); merr == nil {
			raise(w, WarnPermRepaired, health.Warn,
				"The persistent partition was damaged and has been repaired at boot. Check that the configuration and the filter lists are as expected.")
			return PermRepaired, nil
		}
	}
	log.Error("persistent partition could not be repaired; reformatting it", "fsck", ferr, "mount", merr)
	kerr := ops.mkfs(ctx, dev)
	if kerr == nil {
		if merr = ops.mount(dev, dir); merr == nil {
			raise(w, WarnPermReformatted, health.Critical,
				"The persistent partition was unreadable and has been reformatted: what the box had stored is lost. It runs on defaults until the NOC sends its configuration again.")
			return PermReformatted, nil
		}
	}
	return volatile(log, w, ops, dir, errors.Join(fmt.Errorf("fsck: %w", ferr), fmt.Errorf("mkfs: %w", kerr), fmt.Errorf("mount: %w", merr)))
}

func volatile(log *slog.Logger, w *health.Registry, ops permOps, dir string, cause error) (PermOutcome, error) {
	raise(w, WarnPermVolatile, health.Critical,
		"The persistent partition cannot be used: nothing the box stores survives a restart. The storage may be failing and should be replaced.")
	if err := ops.mountVolatile(dir); err != nil {
		return PermVolatile, errors.Join(cause, fmt.Errorf("tmpfs on %s: %w", dir, err))
	}
	log.Error("persistent partition unavailable; using a tmpfs", "dir", dir, "err", cause)
	return PermVolatile, cause
}

func raise(w *health.Registry, code string, sev health.Severity, msg string) {
	w.Raise("boot", code, sev, msg)
}
