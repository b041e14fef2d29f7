package watchdog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// device is a Linux watchdog character device (/dev/watchdog), or for
// tests anything that accepts writes (a FIFO, a file).
type device struct {
	mu sync.Mutex
	f  *os.File
}

// Open arms the watchdog at path with timeout (0 keeps the driver's).
// Opening the device starts the hardware countdown, so the caller must
// kick from now on. A file that is not a watchdog (a FIFO in a test)
// rejects the timeout ioctl: that is logged and the file is used as is.
func Open(log *slog.Logger, path string, timeout time.Duration) (Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w", path, err)
	}
	if timeout > 0 {
		secs := int(timeout.Round(time.Second) / time.Second)
		// WDIOC_SETTIMEOUT writes back the timeout the driver chose.
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
			if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
				log.Warn("watchdog: cannot set the timeout; keeping the device's", "device", path, "want", timeout, "err", err)
			} else {
				f.Close()
				return nil, fmt.Errorf("watchdog %s: set timeout %ds: %w", path, secs, err)
			}
		}
	}
	if got, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT); err == nil {
		log.Info("watchdog armed", "device", path, "timeout", time.Duration(got)*time.Second)
	} else {
		log.Info("watchdog armed", "device", path, "timeout", "unknown")
	}
	return &device{f: f}, nil
}

// Kick writes one byte: every watchdog driver takes a write as a
// keep-alive, and unlike WDIOC_KEEPALIVE it also works on a test FIFO.
func (d *device) Kick() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return errors.New("watchdog closed")
	}
	_, err := d.f.Write([]byte{'k'})
	return err
}

// Disarm writes the magic character 'V' and closes: the driver then stops
// the countdown (unless built with nowayout).
func (d *device) Disarm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	_, werr := d.f.Write([]byte{'V'})
	cerr := d.f.Close()
	d.f = nil
	return errors.Join(werr, cerr)
}
