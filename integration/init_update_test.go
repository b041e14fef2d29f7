package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/update"
)

// TestUpdateRebootAsPID1: as init, an update pushed with ?reboot=1 is
// installed into the inactive slot, then the box restarts through init's
// orderly shutdown (event update-reboot, shutdown action reboot; in a PID
// namespace reboot(2) ends the init with SIGHUP), after the pusher had its
// answer (over HTTPS with the box's certificate, trusted on first use).
func TestUpdateRebootAsPID1(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux)", tool)
		}
	}
	work, cfgPath := initWorkDir(t)
	key := filepath.Join(work, "noc.key")
	k := nocKeygen(t, bins(t).ctl, "noc-lab", key)
	cfg := readDemo(t) + fmt.Sprintf("management:\n  trusted_keys:\n    - name: noc-lab\n      public_key: %s\n", k.PublicKey)
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	slotsDir := filepath.Join(work, "slots") // not under /tmp: the init mounts a tmpfs there
	slots, err := update.CreateFileSlots(slotsDir, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(work, "slot.img")
	os.WriteFile(img, []byte(strings.Repeat("new firmware\n", 200000)), 0o644)
	bundle := filepath.Join(work, "update.bundle")
	if b, err := exec.Command(bins(t).ctl, "update", "sign", "--key", key, "--board", "lab", "--version", "99.0.0", "--out", bundle, img).CombinedOutput(); err != nil {
		t.Fatalf("update sign: %v\n%s", err, b)
	}

	in := startInit(t, bins(t).passerelle, cfgPath, "--perm-device", filepath.Join(work, "no-such-disk"), "--perm-dir", filepath.Join(work, "perm"),
		"--dhcp-lease-dir", filepath.Join(work, "perm", "leases"), "--update-slots", slotsDir, "--update-listen", "127.0.0.1:8444")
	in.waitEvent(t, 20*time.Second, "config-applied", nil)
	mark := in.mark()
	res, err := exec.Command("nsenter", "--target", strconv.Itoa(in.pid), "--net", bins(t).ctl, "update", "push", "--reboot",
		"--box", "https://127.0.0.1:8444", "--known-boxes", filepath.Join(work, "known_boxes"), bundle).CombinedOutput()
	t.Logf("update push:\n%s", res)
	if err != nil || !strings.Contains(string(res), "the box restarts now to try slot b") {
		t.Fatalf("update push: %v", err)
	}
	in.waitEventAfter(t, mark, 5*time.Second, update.EvInstalled, map[string]string{"slot": "b"})
	in.waitEventAfter(t, mark, 5*time.Second, update.EvReboot, map[string]string{"slot": "b"})
	ierr, ok := in.wait(40 * time.Second)
	if !ok {
		t.Fatal("init still running after the update asked for a reboot")
	}
	if ierr == nil || !strings.Contains(ierr.Error(), "hangup") {
		t.Errorf("init ended with %v, want the SIGHUP of reboot(2)", ierr)
	}
	if len(in.events("shutdown", map[string]string{"action": "reboot"})) == 0 {
		t.Error("no shutdown event (action reboot)")
	}
	if st, _ := slots.State(); st.Try != "b" {
		t.Errorf("slots %+v", st)
	}
}
