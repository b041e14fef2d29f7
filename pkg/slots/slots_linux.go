package slots

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/boot"
)

// EnvPath is the environment block's place on the EFI system partition,
// beside grub.cfg (GRUB's load_env reads $prefix/grubenv).
const EnvPath = "EFI/BOOT/grubenv"

func linuxSystem() System { return sysLinux{} }

type sysLinux struct{}

func (sysLinux) Cmdline() (string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	return string(b), err
}

func (sysLinux) Partition(name string) (string, int64, error) {
	dev, err := boot.FindPartition(name)
	if err != nil {
		return "", 0, err
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	if err != nil {
		return "", 0, fmt.Errorf("%s: size: %w", dev, err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%s: size %q: %w", dev, b, err)
	}
	return dev, sectors * 512, nil // sysfs counts 512-byte sectors whatever the device's
}

// withESP mounts the EFI system partition for the time of fn only: the
// block is read or written rarely, and a partition that is not mounted
// cannot be left half-written by a power cut between two writes.
func withESP(readOnly bool, fn func(dir string) error) (err error) {
	dev, err := boot.FindPartition(PartESP)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "esp-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, "vfat", flags, "codepage=437,iocharset=ascii,shortname=mixed"); err != nil {
		return fmt.Errorf("mount %s (vfat) on %s: %w", dev, dir, err)
	}
	defer func() {
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmount %s: %w", dir, uerr)
		}
	}()
	return fn(dir)
}

func (sysLinux) ReadEnv() ([]byte, error) {
	var b []byte
	err := withESP(true, func(dir string) error {
		var err error
		b, err = os.ReadFile(filepath.Join(dir, EnvPath))
		return err
	})
	return b, err
}

// WriteEnv replaces the file (temporary file, fsync, rename, fsync of the
// directory): GRUB reads whichever of the two is named grubenv, whole.
func (sysLinux) WriteEnv(block []byte) error {
	if len(block) != EnvSize {
		return errors.New("grubenv: refusing a block of the wrong size")
	}
	return withESP(false, func(dir string) error {
		return atomicfile.Replace(filepath.Join(dir, EnvPath), block, 0o644)
	})
}
