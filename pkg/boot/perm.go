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
	// PermInitialised: the partition was blank (a new disk, a first
	// boot): formatted and mounted. Nothing was lost.
	PermInitialised
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
	case PermInitialised:
		return "blank; formatted and mounted (first boot)"
	}
	return "unknown"
}

// permOps are the system operations of the /perm recovery, behind an
// interface so the sequence is tested without disks.
type permOps interface {
	// resolve finds the device; release is called when the recovery is
	// over (it detaches nothing that is mounted).
	resolve(ctx context.Context) (dev string, release func(), err error)
	// blank reports whether the device holds nothing at all (all
	// zeros where a filesystem keeps its superblock): a new disk.
	blank(dev string) bool
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
	if ops.blank(dev) {
		// A new disk is a first boot, not a loss: format it without
		// trying the repairs, and say so quietly.
		log.Info("persistent partition is blank: formatting it (first boot)")
		err := ops.mkfs(ctx, dev)
		if err == nil {
			err = ops.mount(dev, dir)
		}
		if err != nil {
			return volatile(log, w, ops, dir, fmt.Errorf("format the blank partition: %w", err))
		}
		raise(w, WarnPermInitialised, health.Info,
			"The persistent partition was blank and has been formatted: this is the box's first boot on this storage.")
		return PermInitialised, nil
	}
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

// Key is the outcome as one word, for structured events.
func (o PermOutcome) Key() string {
	switch o {
	case PermMounted:
		return "mounted"
	case PermRepaired:
		return "repaired"
	case PermReformatted:
		return "reformatted"
	case PermVolatile:
		return "volatile"
	case PermInitialised:
		return "initialised"
	}
	return "unknown"
}

// EvPermReady is the structured event of the /perm step: outcome (Key)
// and boots, the number of boots on this partition, this one included.
const EvPermReady = "perm-ready"
