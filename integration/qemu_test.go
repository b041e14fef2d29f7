package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQEMUBoot builds the qemu-arm64 image twice (the two builds must be
// identical), then boots it twice on the same disk under
// qemu-system-aarch64 (TCG: no KVM needed) through UEFI and GRUB into
// slot A, with passerelle as /init: the first boot finds a blank /perm,
// formats it and counts boot 1; the second mounts it as it was (boot 2).
// Each boot loads the modules from the image, names the ports, applies
// the firewall and reaches "running, configured"; QEMU's power button
// then powers it off cleanly. Then, on the same disk, the A/B updates
// (qemu_update_test.go): one committed by the health gate, one that
// crashes, one that hangs and one that fails its health gate, each
// abandoned by the box itself. Skipped
// without QEMU, its UEFI firmware, mtools or the packages in the
// cache (tools/mkimage/fetch.sh, which .ci/run calls).
func TestQEMUBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("qemu boot skipped in -short mode")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is built on Linux")
	}
	for _, tool := range []string{"qemu-system-aarch64", "dpkg-deb", "depmod", "grub-mkimage", "mformat", "mcopy", "mmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-system-arm qemu-efi-aarch64 kmod grub-common mtools)", tool)
		}
	}
	if _, err := os.Stat(uefiFirmware); err != nil {
		t.Skipf("no UEFI firmware for arm64 (apt-get install qemu-efi-aarch64): %v", err)
	}
	cache := os.Getenv("PASSERELLE_CACHE")
	if cache == "" {
		cache = "/var/cache/passerelle"
	}
	debs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*-arm64_*_arm64.deb"))
	tools, _ := filepath.Glob(filepath.Join(cache, "debs", "e2fsprogs_*_arm64.deb"))
	grubs, _ := filepath.Glob(filepath.Join(cache, "boot", "grub-efi-arm64-bin_*_arm64.deb"))
	if len(debs) == 0 || len(tools) == 0 || len(grubs) == 0 {
		t.Skipf("no arm64 kernel, e2fsprogs or GRUB package in %s: run sh tools/mkimage/fetch.sh", cache)
	}
	sort.Strings(grubs)
	sort.Strings(debs)
	dir := t.TempDir()

	start := time.Now()
	goBin := goTool()
	run := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	bin := filepath.Join(dir, "passerelle-arm64")
	run([]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"}, goBin, "build", "-trimpath", "-ldflags", "-s -w -X passerelle/pkg/version.Version=0.1.0", "-o", bin, "./cmd/passerelle")
	lan := newQEMULAN(t, dir) // the school computer on lan0 (qemu_lan_test.go)
	mk := filepath.Join(dir, "mkimage")
	run(nil, goBin, "build", "-o", mk, "./tools/mkimage")
	images := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	imageConfig := lan.config(t, dir)
	mkArgs := []string{"-board", "qemu-arm64", "-kernel-deb", debs[len(debs)-1], "-debs", filepath.Join(cache, "debs"),
		"-grub-deb", grubs[len(grubs)-1]}
	// The updates (qemu_update_test.go) are pushed from the LAN computer,
	// which needs root: the image then trusts the test's NOC key and
	// serves the update API on the LAN.
	var ctl, key string
	if lan != nil {
		ctl = bins(t).ctl
		imageConfig, key = updateConfig(t, dir, imageConfig, ctl)
		mkArgs = append(mkArgs, "-run-args", "--update-listen "+updateListen)
	}
	mkArgs = append(mkArgs, "-config", imageConfig)
	for _, out := range images {
		run(nil, append([]string{mk}, append(mkArgs, "-passerelle", bin, "-out", out)...)...)
	}
	sumA, _ := os.ReadFile(filepath.Join(images[0], "SHA256SUMS"))
	sumB, _ := os.ReadFile(filepath.Join(images[1], "SHA256SUMS"))
	if len(sumA) == 0 || !bytes.Equal(sumA, sumB) {
		t.Errorf("two builds of the same inputs differ:\n%s\n%s", sumA, sumB)
	}
	t.Logf("image built twice in %s:\n%s", time.Since(start).Round(time.Second), sumA)
	// The four updates build while the first two boots run.
	updates := make(chan updateImages, 1)
	if lan != nil {
		go func() { updates <- buildUpdates(dir, goBin, mk, ctl, key, mkArgs) }()
	}

	img := images[0]
	disk := filepath.Join(dir, "disk.img")
	data, err := os.ReadFile(filepath.Join(img, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}

	for boot, want := range []struct {
		outcome string
		boots   float64
	}{{"initialised", 1}, {"mounted", 2}} {
		t.Run(fmt.Sprintf("boot%d", boot+1), func(t *testing.T) {
			vm := startVM(t, img, disk, filepath.Join(dir, fmt.Sprintf("mon%d.sock", boot)), lan.port())
			ev := vm.waitEvent(t, 90*time.Second, func(e map[string]any) bool { return e["event"] == "perm-ready" })
			if ev["outcome"] != want.outcome || ev["boots"] != want.boots {
				t.Errorf("/perm: %v (boot %v), want %s (boot %v)", ev["outcome"], ev["boots"], want.outcome, want.boots)
			}
			running := vm.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "daemon-running" })
			took := time.Since(vm.started)
			if running["configured"] != true {
				t.Fatalf("daemon running but not configured: %v", running)
			}
			for _, step := range []string{"modules", "ifnames", "powerkey", "perm", "nftables"} {
				e := vm.find(func(e map[string]any) bool { return e["msg"] == "boot step done" && e["step"] == step })
				if e == nil {
					t.Errorf("boot step %s: no success logged", step)
				}
			}
			if vm.find(func(e map[string]any) bool { return e["msg"] == "component applied" && e["component"] == "firewall" }) == nil {
				t.Error("firewall not applied")
			}
			if e := vm.find(func(e map[string]any) bool { return e["msg"] == "boot step failed" }); e != nil {
				t.Errorf("a boot step failed: %v", e)
			}
			if e := vm.find(func(e map[string]any) bool {
				return e["event"] == "health-raised" && strings.HasPrefix(fmt.Sprint(e["code"]), "perm-") && e["severity"] != "info"
			}); e != nil {
				t.Errorf("/perm warning: %v", e)
			}
			t.Logf("boot %d: running, configured %.1f s after QEMU started", boot+1, took.Seconds())
			lan.check(t, vm, boot+1)

			// The power button: one press must do.
			vm.monitor(t, "system_powerdown")
			vm.waitEvent(t, 30*time.Second, func(e map[string]any) bool { return e["event"] == "power-key" })
			vm.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "shutdown" })
			select {
			case <-vm.exited:
			case <-time.After(60 * time.Second):
				t.Fatal("QEMU still running 60 s after the power off")
			}
			if !strings.Contains(vm.text(), "reboot: Power down") {
				t.Error("the kernel did not power down")
			}
		})
		if t.Failed() {
			return
		}
	}
	if lan == nil {
		t.Log("not root: no LAN computer to push the updates from; the A/B updates are not tested")
		return
	}
	u := <-updates
	if u.err != nil {
		t.Fatal(u.err)
	}
	testUpdates(t, dir, disk, lan, u, ctl)
}

// vm is one QEMU run and what its serial console printed.
type vm struct {
	cmd     *exec.Cmd
	monSock string
	started time.Time
	exited  chan struct{}

	mu     sync.Mutex
	lines  []string
	events []map[string]any
	notify chan struct{}
}

// uefiFirmware is QEMU's UEFI for arm64 (Debian's qemu-efi-aarch64).
const uefiFirmware = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

// startVM boots disk once: a restart of the box ends QEMU.
func startVM(t *testing.T, img, disk, mon string, lan lanPort) *vm {
	t.Helper()
	return startVMWith(t, disk, mon, lan, false)
}

// startVMWith boots disk through UEFI and GRUB (the image's A/B boot);
// with reboot, a restart of the box (panic=-1, the watchdog, reboot)
// boots it again in the same QEMU, as hardware would. 256 MiB: with
// 128, UEFI has no room for GRUB to load the 33 MB kernel.
func startVMWith(t *testing.T, disk, mon string, lan lanPort, reboot bool) *vm {
	t.Helper()
	v := &vm{monSock: mon, exited: make(chan struct{}), notify: make(chan struct{}, 1)}
	args := []string{"-M", "virt", "-cpu", "max,pauth-impdef=on", "-m", "256", "-smp", "2",
		"-nographic", "-monitor", "unix:" + mon + ",server,nowait", "-bios", uefiFirmware,
		"-drive", "file=" + disk + ",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,addr=0x4,bootindex=0",
		"-netdev", "user,id=wan", "-device", "virtio-net-pci,netdev=wan,addr=0x2,romfile=",
		"-netdev", lan.netdevArg(), "-device", "virtio-net-pci,netdev=lan,addr=0x3,romfile=",
		"-device", "i6300esb"}
	if !reboot {
		args = append(args, "-no-reboot")
	}
	v.cmd = exec.Command("qemu-system-aarch64", args...)
	v.cmd.ExtraFiles = lan.files
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.cmd.Stdin = nil
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go v.read(out)
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			v.cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			t.Logf("console:\n%s", v.text())
		}
	})
	return v
}

func (v *vm) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		var e map[string]any
		v.mu.Lock()
		v.lines = append(v.lines, line)
		if i := strings.Index(line, "{\""); i >= 0 && json.Unmarshal([]byte(line[i:]), &e) == nil {
			v.events = append(v.events, e)
		}
		v.mu.Unlock()
		select {
		case v.notify <- struct{}{}:
		default:
		}
	}
	v.cmd.Wait()
	close(v.exited)
}

func (v *vm) text() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.lines, "\n")
}

func (v *vm) find(match func(map[string]any) bool) map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.events {
		if match(e) {
			return e
		}
	}
	return nil
}

func (v *vm) waitEvent(t *testing.T, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	e, _ := v.waitEventFrom(t, 0, timeout, match)
	return e
}

// waitEventFrom waits for an event matching at index from or later of
// v's log (a VM that reboots logs the same events again) and returns it
// with the index after it.
func (v *vm) waitEventFrom(t *testing.T, from int, timeout time.Duration, match func(map[string]any) bool) (map[string]any, int) {
	t.Helper()
	find := func() (map[string]any, int) {
		v.mu.Lock()
		defer v.mu.Unlock()
		for i := from; i < len(v.events); i++ {
			if match(v.events[i]) {
				return v.events[i], i + 1
			}
		}
		return nil, from
	}
	deadline := time.After(timeout)
	for {
		if e, i := find(); e != nil {
			return e, i
		}
		select {
		case <-v.notify:
		case <-v.exited:
			if e, i := find(); e != nil {
				return e, i
			}
			t.Fatal("QEMU exited before the event")
		case <-deadline:
			t.Fatalf("no such event after %s", timeout)
		}
	}
}

// monitor sends one command to QEMU's human monitor and waits for its
// prompt to come back (the command has run).
func (v *vm) monitor(t *testing.T, command string) {
	t.Helper()
	c, err := net.DialTimeout("unix", v.monSock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	prompts := func() int { return strings.Count(string(got), "(qemu) ") }
	readUntil := func(n int) {
		buf := make([]byte, 4096)
		for prompts() < n {
			k, err := c.Read(buf)
			got = append(got, buf[:k]...)
			if err != nil {
				t.Fatalf("monitor: %v after %q", err, got)
			}
		}
	}
	readUntil(1) // banner
	if _, err := c.Write([]byte(command + "\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(2)
}
