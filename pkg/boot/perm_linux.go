package boot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"passerelle/pkg/health"

	"golang.org/x/sys/unix"
)

// MountPerm mounts the persistent partition on opts.PermDir, repairing or
// reformatting it if it does not mount (see recoverPerm).
func MountPerm(ctx context.Context, log *slog.Logger, w *health.Registry, opts Options) (PermOutcome, error) {
	opts.defaults()
	return recoverPerm(ctx, log, w, &permSystem{log: log, opts: opts}, opts.PermDir)
}

// UnmountPerm unmounts dir for a shutdown; if it is busy it is remounted
// read-only, which is what matters for the filesystem's consistency.
func UnmountPerm(dir string) error {
	if err := unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
		return nil // EINVAL: not mounted
	} else if !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("unmount %s: busy, and remount read-only failed: %w", dir, err)
	}
	return fmt.Errorf("unmount %s: busy; remounted read-only", dir)
}

type permSystem struct {
	log  *slog.Logger
	opts Options
}

func (p *permSystem) resolve(ctx context.Context) (string, func(), error) {
	dev, err := p.waitDevice(ctx)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return "", nil, err
	}
	switch {
	case fi.Mode()&os.ModeDevice != 0:
		return dev, func() {}, nil
	case fi.Mode().IsRegular():
		l, err := AttachLoop(dev)
		if err != nil {
			return "", nil, err
		}
		p.log.Info("persistent image attached", "image", dev, "loop", l.Path)
		// Closing our descriptor detaches the loop device once nothing
		// uses it (autoclear): after a successful mount, the mount keeps
		// it.
		return l.Path, func() { l.Close() }, nil
	}
	return "", nil, fmt.Errorf("%s is neither a block device nor an image file", dev)
}

// waitDevice finds the partition, waiting up to PermWait for it: USB and
// MMC storage is probed asynchronously after its driver loads, and a
// partition table is read after the disk appears. A device named outside
// /dev (an image file: the lab, tests) is not waited for: files do not
// appear by themselves.
func (p *permSystem) waitDevice(ctx context.Context) (string, error) {
	wait := p.opts.PermWait
	if d := p.opts.PermDevice; d != "" && !strings.HasPrefix(d, "/dev/") {
		wait = 0
	}
	deadline := time.Now().Add(wait)
	for waited := false; ; waited = true {
		dev, err := p.opts.PermDevice, error(nil)
		if dev == "" {
			dev, err = findPartition("/sys/class/block", "perm")
		} else if _, serr := os.Stat(dev); serr != nil {
			err = serr
		}
		if err == nil {
			if waited {
				p.log.Info("persistent partition appeared", "device", dev, "waited", time.Since(deadline.Add(-wait)).Round(time.Millisecond))
			}
			return dev, nil
		}
		if time.Now().After(deadline) {
			if wait == 0 {
				return "", err
			}
			return "", fmt.Errorf("%w (waited %s)", err, wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// blank reads the first 64 KiB, where ext2/3/4, FAT, XFS, btrfs and
// swap keep their signatures: all zeros is a disk nothing was ever
// written to.
func (p *permSystem) blank(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, err := io.ReadFull(f, buf)
	if err != nil && n == 0 {
		return false
	}
	for _, b := range buf[:n] {
		if b != 0 {
			return false
		}
	}
	return true
}

func (p *permSystem) mount(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// noatime spares the flash; errors=remount-ro stops further damage
	// if the disk starts failing at run time.
	return unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "errors=remount-ro")
}

// fsck runs e2fsck -f -y. Exit codes 1 and 2 mean errors were corrected;
// 4 and above that some remain or fsck itself failed.
func (p *permSystem) fsck(ctx context.Context, dev string) error {
	out, err := exec.CommandContext(ctx, p.opts.FsckPath, "-f", "-y", dev).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 && ee.ExitCode()&^3 == 0 {
		err = nil
	}
	p.log.Info("fsck", "device", dev, "err", err, "output", lastLines(out, 5))
	if err != nil {
		return fmt.Errorf("%s: %w", p.opts.FsckPath, err)
	}
	return nil
}

func (p *permSystem) mkfs(ctx context.Context, dev string) error {
	out, err := exec.CommandContext(ctx, p.opts.MkfsPath, "-F", "-q", "-L", "perm", dev).CombinedOutput()
	p.log.Info("mkfs", "device", dev, "err", err, "output", lastLines(out, 5))
	if err != nil {
		return fmt.Errorf("%s: %w", p.opts.MkfsPath, err)
	}
	return nil
}

func (p *permSystem) mountVolatile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
}

// FindPartition returns /dev/NAME of the partition whose GPT name is
// label (pkg/slots finds the system slots and the EFI system partition
// this way).
func FindPartition(label string) (string, error) { return findPartition("/sys/class/block", label) }

// findPartition returns /dev/NAME of the block device whose GPT partition
// name is label, as the kernel reports it in sysfs uevent files (no udev
// needed).
func findPartition(sysBlock, label string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		var name, part string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "DEVNAME":
				name = v
			case "PARTNAME":
				part = v
			}
		}
		if part == label && name != "" {
			return "/dev/" + name, nil
		}
	}
	return "", fmt.Errorf("no partition named %q in %s", label, sysBlock)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
