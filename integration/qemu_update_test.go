package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// The A/B part of TestQEMUBoot (issue 18): on the disk the two boots left,
// an update to the other slot that the health gate commits, then an
// update whose init exits at once and one that hangs with the watchdog
// armed: each time the box comes back to the good slot by itself and
// reports why (slot-abandoned, the update-abandoned warning).
//
// The updates are installed while the VM is off, by writing what the box
// itself writes (pkg/update's install, then pkg/slots' TryOnce): the slot
// image into the inactive partition, try_slot in the GRUB environment on
// the ESP (mtools), and the trial record on /perm (debugfs). The box's own
// update API cannot be reached from the test: it is served on the tunnel
// address, and --update-listen on the LAN address is refused by the
// box's firewall (the zone's input chain opens DNS, DHCP, NTP and the
// status page only). What runs in the VM is the real boot path: UEFI,
// GRUB's try-once, the trial boot's record, the health gate, the commit
// or the fallback.

// updateImages are the slot images of the three updates.
type updateImages struct {
	good, exit, hang string // slot.img paths
	err              error
}

// buildUpdates builds the three update images (versions 0.2.0, 0.3.0 with
// the exit fault, 0.4.0 with the hang fault) with mkimage.
func buildUpdates(dir, goBin, mk, kernelDeb, cache, grubDeb, config string) updateImages {
	var u updateImages
	for _, b := range []struct {
		version, fault string
		out            *string
	}{{"0.2.0", "", &u.good}, {"0.3.0", "exit", &u.exit}, {"0.4.0", "hang", &u.hang}} {
		bin := filepath.Join(dir, "passerelle-"+b.version)
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X passerelle/pkg/version.Version="+b.version, "-o", bin, "./cmd/passerelle")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			u.err = fmt.Errorf("go build %s: %v\n%s", b.version, err, out)
			return u
		}
		out := filepath.Join(dir, "update-"+b.version)
		args := []string{"-board", "qemu-arm64", "-kernel-deb", kernelDeb, "-debs", filepath.Join(cache, "debs"),
			"-grub-deb", grubDeb, "-passerelle", bin, "-config", config, "-out", out}
		if b.fault != "" {
			args = append(args, "-fault", b.fault)
		}
		cmd = exec.Command(mk, args...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			u.err = fmt.Errorf("mkimage %s: %v\n%s", b.version, err, out)
			return u
		}
		*b.out = filepath.Join(out, "slot.img")
	}
	return u
}

// testUpdates runs the three updates on disk; criticals are the critical
// warnings the good slot had (the trial gate's baseline, which TryOnce
// records).
func testUpdates(t *testing.T, dir, disk string, lan lanPort, u updateImages, criticals []string) {
	t.Run("update-committed", func(t *testing.T) {
		installOffline(t, dir, disk, u.good, "b", "a", criticals)
		v := startVMWith(t, disk, filepath.Join(dir, "mon-up1.sock"), lan, true)
		ev := v.waitEvent(t, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
		if ev["slot"] != "b" || ev["trying"] != true || ev["version"] != "0.2.0" {
			t.Fatalf("the boot after the update: %v, want slot b on trial, version 0.2.0", ev)
		}
		// The gate: 60 s window (rootfs/qemu-arm64.yaml), 20 s of passing.
		c := v.waitEvent(t, 150*time.Second, func(e map[string]any) bool {
			return e["event"] == "slot-committed" || e["event"] == "slot-abandoned"
		})
		if c["event"] != "slot-committed" || c["slot"] != "b" {
			t.Fatalf("the good update was not committed: %v", c)
		}
		t.Logf("slot b committed %.0f s after QEMU started", time.Since(v.started).Seconds())
		powerOff(t, v)
	})
	if t.Failed() {
		return
	}
	for i, bad := range []struct{ name, img, version string }{{"exit", u.exit, "0.3.0"}, {"hang", u.hang, "0.4.0"}} {
		t.Run("update-"+bad.name, func(t *testing.T) {
			installOffline(t, dir, disk, bad.img, "a", "b", criticals)
			v := startVMWith(t, disk, filepath.Join(dir, fmt.Sprintf("mon-bad%d.sock", i)), lan, true)
			ev := v.waitEvent(t, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
			if ev["slot"] != "a" || ev["trying"] != true || ev["version"] != bad.version {
				t.Fatalf("the boot after the update: %v, want slot a on trial, version %s", ev, bad.version)
			}
			v.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "fault-injected" })
			start := time.Now()
			// By itself: the kernel's panic=-1 (exit) or the watchdog
			// (hang, 30 s) restarts the box, and GRUB boots slot b.
			back := v.waitEvent(t, 180*time.Second, func(e map[string]any) bool {
				return e["event"] == "slot-booted" && e["trying"] == false
			})
			if back["slot"] != "b" || back["version"] != "0.2.0" {
				t.Fatalf("after the %s the box booted %v, want the committed slot b (0.2.0)", bad.name, back)
			}
			t.Logf("%s: back on slot b %.0f s after the fault", bad.name, time.Since(start).Seconds())
			ab := v.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "slot-abandoned" })
			if ab["slot"] != "a" || ab["version"] != bad.version || ab["reason"] != "restarted" {
				t.Errorf("abandoned: %v, want slot a, version %s, reason restarted", ab, bad.version)
			}
			w := v.waitEvent(t, 60*time.Second, func(e map[string]any) bool {
				return e["event"] == "health-raised" && e["code"] == "update-abandoned"
			})
			want := fmt.Sprintf("update to slot A (version %s) abandoned: it restarted before its health gate passed (crash or hang)", bad.version)
			if w["message"] != want {
				t.Errorf("warning %q, want %q", w["message"], want)
			}
			v.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "daemon-running" })
			powerOff(t, v)
		})
		if t.Failed() {
			return
		}
	}
}

// powerOff presses QEMU's power button and waits for QEMU to exit.
func powerOff(t *testing.T, v *vm) {
	t.Helper()
	v.monitor(t, "system_powerdown")
	v.waitEvent(t, 60*time.Second, func(e map[string]any) bool { return e["event"] == "shutdown" })
	select {
	case <-v.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU still running 60 s after the power off")
	}
}

// criticalWarnings are the critical warnings raised and not cleared in
// v's log.
func (v *vm) criticalWarnings() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	on := map[string]bool{}
	var order []string
	for _, e := range v.events {
		code, _ := e["code"].(string)
		switch {
		case e["event"] == "health-raised" && e["severity"] == "critical":
			if !on[code] {
				order = append(order, code)
			}
			on[code] = true
		case e["event"] == "health-cleared":
			on[code] = false
		}
	}
	var out []string
	for _, c := range order {
		if on[c] {
			out = append(out, c)
		}
	}
	return out
}

// installOffline does, on the powered-off disk, what the box does for an
// update: the slot image into system-<slot>, the trial record on /perm
// (as pkg/slots' TryOnce writes it), then try_slot in the ESP's grubenv.
func installOffline(t *testing.T, dir, disk, slotImg, slot, from string, criticals []string) {
	t.Helper()
	parts := gptPartitions(t, disk)
	data, err := os.ReadFile(slotImg)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := parts["system-"+slot]
	if !ok || int64(len(data)) > p.size {
		t.Fatalf("partition system-%s: %+v for an image of %d bytes", slot, p, len(data))
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, p.offset); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	trial, _ := json.Marshal(map[string]any{"slot": slot, "from": from, "requested_at": time.Now().UTC(), "critical": criticals})
	tf := filepath.Join(dir, "trial.json")
	if err := os.WriteFile(tf, trial, 0o644); err != nil {
		t.Fatal(err)
	}
	cmds := filepath.Join(dir, "debugfs.cmd")
	os.WriteFile(cmds, []byte("mkdir slots\nrm slots/trial.json\nwrite "+tf+" slots/trial.json\n"), 0o644)
	perm := fmt.Sprintf("%s?offset=%d", disk, parts["perm"].offset)
	if out, err := exec.Command("debugfs", "-w", "-f", cmds, perm).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("debugfs", "-R", "cat slots/trial.json", perm).Output(); err != nil || !bytes.Contains(out, []byte(`"slot":"`+slot)) {
		t.Fatalf("trial record not written: %v %s", err, out)
	}

	esp := fmt.Sprintf("%s@@%d", disk, parts["esp"].offset)
	env := exec.Command("mtype", "-i", esp, "::/EFI/BOOT/grubenv")
	env.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	cur, err := env.Output()
	if err != nil || len(cur) != 1024 {
		t.Fatalf("grubenv: %v (%d bytes)", err, len(cur))
	}
	var b bytes.Buffer
	b.WriteString("# GRUB Environment Block\n")
	for _, line := range strings.Split(string(cur), "\n")[1:] {
		if k, _, ok := strings.Cut(line, "="); ok && k != "try_slot" && !strings.HasPrefix(line, "#") {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("try_slot=" + slot + "\n")
	b.Write(bytes.Repeat([]byte{'#'}, 1024-b.Len()))
	ef := filepath.Join(dir, "grubenv")
	if err := os.WriteFile(ef, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := exec.Command("mcopy", "-o", "-i", esp, ef, "::/EFI/BOOT/grubenv")
	cp.Env = env.Env
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("mcopy grubenv: %v\n%s", err, out)
	}
}

type gptPart struct{ offset, size int64 }

// gptPartitions reads the partitions of disk's GPT by name.
func gptPartitions(t *testing.T, disk string) map[string]gptPart {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := make([]byte, 512)
	if _, err := f.ReadAt(h, 512); err != nil || string(h[:8]) != "EFI PART" {
		t.Fatalf("%s: no GPT header (%v)", disk, err)
	}
	lba := int64(binary.LittleEndian.Uint64(h[72:]))
	n := int(binary.LittleEndian.Uint32(h[80:]))
	size := int(binary.LittleEndian.Uint32(h[84:]))
	entries := make([]byte, n*size)
	if _, err := f.ReadAt(entries, lba*512); err != nil {
		t.Fatal(err)
	}
	out := map[string]gptPart{}
	for i := 0; i < n; i++ {
		e := entries[i*size : (i+1)*size]
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if first == 0 {
			continue
		}
		var name []uint16
		for j := 56; j+1 < 128; j += 2 {
			c := binary.LittleEndian.Uint16(e[j:])
			if c == 0 {
				break
			}
			name = append(name, c)
		}
		out[string(utf16.Decode(name))] = gptPart{offset: first * 512, size: (last - first + 1) * 512}
	}
	return out
}
