package integration

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWatchdogKicksStopWhenCriticalServiceFails runs the firmware with a
// FIFO as its watchdog device and a critical service that crash-loops:
// the daemon kicks while healthy, stops kicking once the service is
// marked failed (the hardware would reboot the box), and still disarms
// the watchdog with the magic 'V' on an orderly shutdown.
func TestWatchdogKicksStopWhenCriticalServiceFails(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	bin := bins(t).passerelle
	dir, cfgPath := initWorkDir(t)
	fifo := filepath.Join(dir, "watchdog")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got bytes.Buffer
	eof := make(chan struct{})
	go func() {
		f, err := os.Open(fifo) // until the daemon opens it for writing
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, 16)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if err == io.EOF {
				close(eof)
				return
			}
		}
	}()
	t.Cleanup(func() { // unblock the reader if the daemon never opened it
		if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	kicks := func() int {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Count(got.Bytes(), []byte("k"))
	}
	services := filepath.Join(dir, "services.yaml")
	os.WriteFile(services, []byte(`
- name: vital
  command: [/bin/sh, -c, "sleep 1.5; exit 1"]
  critical: true
`), 0o644)
	// As PID 1 in its own namespaces, so it runs whatever the components
	// make of a box without interfaces.
	in := startInit(t, bin, cfgPath, "--perm-device", filepath.Join(dir, "no-disk"), "--perm-dir", filepath.Join(dir, "perm"),
		"--dhcp-lease-dir", filepath.Join(dir, "perm", "leases"),
		"--watchdog-device", fifo, "--watchdog-timeout", "3s",
		"--services", services, "--backoff-base", "50ms", "--crash-loop-exits", "2")

	waitUntil(t, "two kicks", 5*time.Second, func() bool { return kicks() >= 2 })
	in.waitEvent(t, 10*time.Second, "service-failed", map[string]string{"component": "supervisor", "service": "vital"})
	in.waitEvent(t, 5*time.Second, "watchdog-stalled", nil)
	stalled := kicks()
	time.Sleep(2500 * time.Millisecond) // more than two kick intervals (1 s)
	if now := kicks(); now != stalled {
		t.Errorf("kicks went on after the critical service failed: %d then %d", stalled, now)
	}

	syscall.Kill(in.pid, syscall.SIGTERM)
	if _, ok := in.wait(15 * time.Second); !ok { // it reboots
		t.Fatal("init did not stop")
	}
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog device not closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if b := got.Bytes(); len(b) == 0 || b[len(b)-1] != 'V' {
		t.Errorf("last byte written to the watchdog %q, want the magic close 'V'", b)
	}
}
