package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The A/B part of TestQEMUBoot (issue 18): in one VM on the disk the two
// boots left, through the box's update API and the real update path
// (pkg/update streams the signed bundle into the inactive slot, verifies
// it, calls pkg/slots' TryOnce and reboots): an update to the other slot
// that the health gate commits, then an update whose init exits at once,
// one that hangs with the watchdog armed, and one that runs but fails its
// health gate (it cannot reach its uplink). Each time the box comes back
// to the good slot by itself and reports why (slot-abandoned, the
// update-abandoned warning).
//
// The update API is served on the tunnel address; the image of this test
// also serves it with --update-listen on the LAN address (mkimage
// -run-args) and its configuration opens that port to the school zone
// (a firewall rule to the box), so the LAN computer of qemu_lan_test.go
// pushes the bundles with passerellectl.

// updateListen is where the test image serves the update API.
const (
	updateListen = "10.99.0.1:8444"
	updatePort   = 8444
)

// updateConfig writes the image's configuration for the update tests:
// base with a NOC key trusted and the update API open to the school
// zone. It returns the file and the key.
func updateConfig(t *testing.T, dir, base, ctl string) (cfg, key string) {
	t.Helper()
	key = filepath.Join(dir, "noc.key")
	k := nocKeygen(t, ctl, "qemu-test-noc", key)
	if !filepath.IsAbs(base) {
		base = filepath.Join("..", base)
	}
	data, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", base, err)
	}
	mg, _ := doc["management"].(map[string]any)
	if mg == nil {
		mg = map[string]any{}
		doc["management"] = mg
	}
	mg["trusted_keys"] = []any{map[string]any{"name": k.KeyID, "public_key": k.PublicKey}}
	fw, _ := doc["firewall"].(map[string]any)
	if fw == nil {
		fw = map[string]any{}
		doc["firewall"] = fw
	}
	rules, _ := fw["rules"].([]any)
	fw["rules"] = append(rules, map[string]any{"name": "update-api-test", "from": lanZoneName, "to": "box",
		"protocol": "tcp", "ports": []any{updatePort}, "action": "accept"})
	data, err = yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "qemu-update.yaml")
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, key
}

// updateImages are the signed bundles of the four updates.
type updateImages struct {
	good, exit, hang, unhealthy string // bundle paths
	err                         error
}

// gateFailWindow is the health gate's window of the unhealthy update's
// test image (passerelle run --confirm-timeout on its kernel command
// line; every other image keeps its configuration's 60 s): a gate that
// cannot pass fails only when its window ends, so a shorter one keeps the
// test short.
const gateFailWindow = 15 * time.Second

// buildUpdates builds the four update images (versions 0.2.0, 0.3.0 with
// the exit fault, 0.4.0 with the hang fault, 0.5.0 with the unhealthy
// fault and a short gate window) with mkimage, and signs each slot image
// as an update bundle.
func buildUpdates(dir, goBin, mk, ctl, key string, mkArgs []string) updateImages {
	var u updateImages
	for _, b := range []struct {
		version, fault, runArgs string
		out                     *string
	}{{"0.2.0", "", "", &u.good}, {"0.3.0", "exit", "", &u.exit}, {"0.4.0", "hang", "", &u.hang},
		{"0.5.0", "unhealthy", "--confirm-timeout " + gateFailWindow.String(), &u.unhealthy}} {
		bin := filepath.Join(dir, "passerelle-"+b.version)
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X passerelle/pkg/version.Version="+b.version, "-o", bin, "./cmd/passerelle")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			u.err = fmt.Errorf("go build %s: %v\n%s", b.version, err, out)
			return u
		}
		out := filepath.Join(dir, "update-"+b.version)
		args := append(append([]string(nil), mkArgs...), "-passerelle", bin, "-out", out)
		if b.fault != "" {
			args = append(args, "-fault", b.fault)
		}
		if b.runArgs != "" {
			// The last -run-args counts: the update API's, then these.
			args = append(args, "-run-args", "--update-listen "+updateListen+" "+b.runArgs)
		}
		cmd = exec.Command(mk, args...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			u.err = fmt.Errorf("mkimage %s: %v\n%s", b.version, err, out)
			return u
		}
		bundle := filepath.Join(dir, "update-"+b.version+".bundle")
		if out, err := exec.Command(ctl, "update", "sign", "--key", key, "--board", "qemu-arm64", "--version", b.version,
			"--out", bundle, filepath.Join(out, "slot.img")).CombinedOutput(); err != nil {
			u.err = fmt.Errorf("passerellectl update sign %s: %v\n%s", b.version, err, out)
			return u
		}
		*b.out = bundle
	}
	return u
}

// testUpdates pushes the four updates into one VM from the LAN computer.
func testUpdates(t *testing.T, dir, disk string, lan *qemuLAN, u updateImages, ctl string) {
	v := startVMWith(t, disk, filepath.Join(dir, "mon-update.sock"), lan.port(), true)
	// The good slot: running, and its critical warnings known (the DNS
	// filter has looked for its lists), which TryOnce records as the
	// trial gate's baseline.
	from := 0
	ev, _ := v.waitEventFrom(t, from, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
	if ev["slot"] != "a" || ev["trying"] != false {
		t.Fatalf("first boot of the update VM: %v, want slot a committed", ev)
	}
	_, from = v.waitEventFrom(t, from, 90*time.Second, func(e map[string]any) bool {
		return e["event"] == "dns-lists-missing" || e["event"] == "dns-lists-loaded"
	})

	t.Run("update-committed", func(t *testing.T) {
		from = pushUpdate(t, v, lan, ctl, u.good, "0.2.0", "b", from)
		// The gate: 60 s window (rootfs/qemu-arm64.yaml), 20 s of passing.
		c, i := v.waitEventFrom(t, from, 180*time.Second, func(e map[string]any) bool {
			return e["event"] == "slot-committed" || e["event"] == "slot-abandoned"
		})
		if c["event"] != "slot-committed" || c["slot"] != "b" || c["version"] != "0.2.0" {
			t.Fatalf("the good update was not committed: %v", c)
		}
		from = i
	})
	if t.Failed() {
		return
	}
	for _, bad := range []struct{ name, bundle, version string }{{"exit", u.exit, "0.3.0"}, {"hang", u.hang, "0.4.0"}} {
		t.Run("update-"+bad.name, func(t *testing.T) {
			from = pushUpdate(t, v, lan, ctl, bad.bundle, bad.version, "a", from)
			_, from = v.waitEventFrom(t, from, 60*time.Second, func(e map[string]any) bool { return e["event"] == "fault-injected" })
			start := time.Now()
			// By itself: the kernel's panic=-1 (exit) or the watchdog
			// (hang, 30 s) restarts the box, and GRUB boots slot b.
			back, i := v.waitEventFrom(t, from, 180*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
			if back["slot"] != "b" || back["trying"] != false || back["version"] != "0.2.0" {
				t.Fatalf("after the %s the box booted %v, want the committed slot b (0.2.0)", bad.name, back)
			}
			t.Logf("%s: back on slot b %.0f s after the fault", bad.name, time.Since(start).Seconds())
			ab, _ := v.waitEventFrom(t, i, 60*time.Second, func(e map[string]any) bool { return e["event"] == "slot-abandoned" })
			if ab["slot"] != "a" || ab["version"] != bad.version || ab["reason"] != "restarted" {
				t.Errorf("abandoned: %v, want slot a, version %s, reason restarted", ab, bad.version)
			}
			w, _ := v.waitEventFrom(t, i, 60*time.Second, func(e map[string]any) bool {
				return e["event"] == "health-raised" && e["code"] == "update-abandoned"
			})
			want := fmt.Sprintf("update to slot A (version %s) abandoned: it restarted before its health gate passed (crash or hang)", bad.version)
			if w["message"] != want {
				t.Errorf("warning %q, want %q", w["message"], want)
			}
			_, from = v.waitEventFrom(t, i, 90*time.Second, func(e map[string]any) bool {
				return e["event"] == "dns-lists-missing" || e["event"] == "dns-lists-loaded"
			})
		})
		if t.Failed() {
			return
		}
	}
	t.Run("update-gate-failed", func(t *testing.T) {
		// The trial boots and runs, but nothing it sends leaves through
		// wan0 (the unhealthy fault): its uplink never comes online, the
		// gate's uplinks probe fails until the window ends, and the box
		// records why and restarts into slot b by itself.
		from = pushUpdate(t, v, lan, ctl, u.unhealthy, "0.5.0", "a", from)
		trial := time.Now()
		_, from = v.waitEventFrom(t, from, 60*time.Second, func(e map[string]any) bool {
			return e["event"] == "fault-injected" && e["fault"] == "unhealthy" && e["interfaces"] != nil
		})
		ab, i := v.waitEventFrom(t, from, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-abandoned" })
		decided := time.Since(trial)
		detail, _ := ab["detail"].(string)
		if ab["slot"] != "a" || ab["version"] != "0.5.0" || ab["reason"] != "gate-failed" {
			t.Fatalf("abandoned: %v, want slot a, version 0.5.0, reason gate-failed", ab)
		}
		// The probe that failed is named first: uplinks, for the reason
		// the fault causes.
		if !strings.HasPrefix(detail, "gate failed: uplinks: ") {
			t.Errorf("abandoned with detail %q, want the uplinks probe's failure", detail)
		}
		back, i := v.waitEventFrom(t, i, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
		if back["slot"] != "b" || back["trying"] != false || back["version"] != "0.2.0" || back["boot_slot"] != "b" {
			t.Fatalf("after the failed gate the box booted %v, want the committed slot b (0.2.0)", back)
		}
		t.Logf("gate-failed: trial abandoned %.0f s after its boot (window %s; %s), back on slot b %.0f s after it",
			decided.Seconds(), gateFailWindow, detail, time.Since(trial).Seconds())
		w, _ := v.waitEventFrom(t, i, 60*time.Second, func(e map[string]any) bool {
			return e["event"] == "health-raised" && e["code"] == "update-abandoned"
		})
		if want := "update to slot A (version 0.5.0) abandoned: " + detail; w["message"] != want {
			t.Errorf("warning %q, want %q", w["message"], want)
		}
		_, from = v.waitEventFrom(t, i, 90*time.Second, func(e map[string]any) bool {
			return e["event"] == "dns-lists-missing" || e["event"] == "dns-lists-loaded"
		})
	})
	if t.Failed() {
		return
	}
	powerOff(t, v)
}

// pushUpdate pushes bundle from the LAN computer with a reboot, and waits
// for the trial boot of slot with that version. It returns the index of
// the trial's slot-booted event.
func pushUpdate(t *testing.T, v *vm, lan *qemuLAN, ctl, bundle, version, slot string, from int) int {
	t.Helper()
	// The API listens once lan0 has its address: retry while it does
	// not answer yet.
	var out string
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		// HTTPS with the box's certificate (kept on /perm across its
		// slots), trusted on first use.
		out, err = lan.ns.Run("", ctl, "update", "push", "--json", "--reboot", "--box", "https://"+updateListen,
			"--known-boxes", filepath.Join(filepath.Dir(bundle), "known_boxes"), bundle)
		if err == nil || time.Now().After(deadline) || !strings.Contains(out, `"outcome":"unreachable"`) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		t.Fatalf("passerellectl update push %s: %v\n%s", version, err, out)
	}
	inst, i := v.waitEventFrom(t, from, 120*time.Second, func(e map[string]any) bool {
		return e["event"] == "update-installed" || e["event"] == "update-rejected" || e["event"] == "update-failed"
	})
	if inst["event"] != "update-installed" || inst["slot"] != slot || inst["version"] != version {
		t.Fatalf("update %s: %v, want it installed in slot %s", version, inst, slot)
	}
	ev, i := v.waitEventFrom(t, i, 120*time.Second, func(e map[string]any) bool { return e["event"] == "slot-booted" })
	if ev["slot"] != slot || ev["trying"] != true || ev["version"] != version {
		t.Fatalf("the boot after update %s: %v, want slot %s on trial", version, ev, slot)
	}
	return i
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
