package boot

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Linux input event codes (include/uapi/linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// WatchPowerKey reads every input device that has a power key (QEMU's
// system_powerdown is a gpio-keys KEY_POWER press on -M virt; boards wire
// a button the same way) and, on a press, sends the daemon SIGUSR2: the
// same orderly power off as `kill -USR2 1`. Devices are the ones present
// now: the boot modules (gpio_keys, evdev) are loaded before.
func WatchPowerKey(log *slog.Logger) (string, error) {
	devs, err := powerKeyDevices("/sys/class/input")
	if err != nil {
		return "", err
	}
	if len(devs) == 0 {
		return "no power key", nil
	}
	for _, d := range devs {
		f, err := os.Open(filepath.Join("/dev/input", d))
		if err != nil {
			return "", fmt.Errorf("power key %s: %w", d, err)
		}
		go readPowerKey(log, f, func() {
			log.Info("power key pressed: powering off", "event", "power-key", "device", d)
			syscall.Kill(os.Getpid(), syscall.SIGUSR2)
		})
	}
	return "watching " + strings.Join(devs, " "), nil
}

// powerKeyDevices lists the eventN devices whose key capability bitmap
// has KEY_POWER.
func powerKeyDevices(sysInput string) ([]string, error) {
	entries, err := os.ReadDir(sysInput)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "event") {
			continue
		}
		caps, err := os.ReadFile(filepath.Join(sysInput, e.Name(), "device", "capabilities", "key"))
		if err == nil && hasKey(string(caps), keyPower) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// hasKey reads a sysfs capability bitmap: hexadecimal words of the
// kernel's long size, most significant first, separated by spaces.
func hasKey(bitmap string, code int) bool {
	words := strings.Fields(bitmap)
	bits := int(unsafe.Sizeof(uintptr(0))) * 8
	idx := len(words) - 1 - code/bits
	if idx < 0 || idx >= len(words) {
		return false
	}
	w, err := strconv.ParseUint(words[idx], 16, 64)
	return err == nil && w&(1<<(code%bits)) != 0
}

// readPowerKey calls press on each KEY_POWER press (value 1) read from r,
// a stream of struct input_event (timeval, type u16, code u16, value s32).
func readPowerKey(log *slog.Logger, r io.ReadCloser, press func()) {
	defer r.Close()
	size := 2*int(unsafe.Sizeof(uintptr(0))) + 8
	buf := make([]byte, size*16)
	for {
		n, err := r.Read(buf)
		if err != nil {
			log.Warn("power key reader stopped", "err", err)
			return
		}
		for off := 0; off+size <= n; off += size {
			ev := buf[off+size-8 : off+size]
			typ := binary.NativeEndian.Uint16(ev[0:])
			code := binary.NativeEndian.Uint16(ev[2:])
			val := int32(binary.NativeEndian.Uint32(ev[4:]))
			if typ == evKey && code == keyPower && val == 1 {
				press()
			}
		}
	}
}
