package boot

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Loop is an image file attached to a loop device.
type Loop struct {
	Path string // /dev/loopN
	dev  *os.File
}

// AttachLoop attaches an image file to a free loop device, with autoclear:
// the kernel detaches it when the last user (this Loop, a mount) lets go.
func AttachLoop(image string) (*Loop, error) {
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	defer img.Close() // the loop device keeps its own reference
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between GET_FREE and
	// configuring it (EBUSY): try the next one.
	for range 10 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop: get free device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		dev, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("loop: %w", err)
		}
		err = configureLoop(int(dev.Fd()), int(img.Fd()), image)
		if errors.Is(err, unix.EBUSY) {
			dev.Close()
			continue
		}
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("loop: attach %s to %s: %w", image, path, err)
		}
		return &Loop{Path: path, dev: dev}, nil
	}
	return nil, fmt.Errorf("loop: no free device for %s", image)
}

func configureLoop(devFd, imgFd int, name string) error {
	var info unix.LoopInfo64
	info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(info.File_name[:len(info.File_name)-1], name)
	cfg := unix.LoopConfig{Fd: uint32(imgFd), Info: info}
	err := unix.IoctlLoopConfigure(devFd, &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	// Kernels before 5.8 have no LOOP_CONFIGURE: set the file, then the
	// flags.
	if err := unix.IoctlSetInt(devFd, unix.LOOP_SET_FD, imgFd); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(devFd, &info); err != nil {
		unix.IoctlSetInt(devFd, unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// Close lets go of the device; with autoclear the kernel detaches it
// unless it is mounted.
func (l *Loop) Close() error { return l.dev.Close() }
