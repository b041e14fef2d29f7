package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/lab"
	"passerelle/pkg/update"
)

// TestUpdatePushLab: firmware updates with the real binaries (issue 18).
// The daemon runs in the lab with file-backed A/B slots (--update-slots)
// and the update API on the box's loopback (--update-listen); the NOC's
// key is made by passerellectl keygen and trusted by the configuration.
// passerellectl update push installs a signed image into slot b (event
// update-installed, b to be tried once, slot a untouched), says a
// reboot is not possible outside init, and the same image signed for
// another board is refused before anything is written (update-rejected).
func TestUpdatePushLab(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "noc.key")
	k := nocKeygen(t, bins(t).ctl, "noc-lab", key)
	cfg := readDemo(t) + fmt.Sprintf("management:\n  trusted_keys:\n    - name: noc-lab\n      public_key: %s\n", k.PublicKey)
	fw := labFor(t, []byte(cfg), nil)
	slots, err := update.CreateFileSlots(filepath.Join(dir, "slots"), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	slotA := bytes.Repeat([]byte("running firmware"), 1<<19)
	if err := os.WriteFile(filepath.Join(dir, "slots", "a.img"), slotA, 0o600); err != nil {
		t.Fatal(err)
	}
	fw.launch(t, t.TempDir(), "--update-slots", filepath.Join(dir, "slots"), "--update-listen", "127.0.0.1:8444")
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)

	img := filepath.Join(dir, "slot.img")
	image := bytes.Repeat([]byte("new firmware "), 500000) // 6.5 MB
	os.WriteFile(img, image, 0o644)
	sign := func(board, out string) {
		t.Helper()
		if b, err := exec.Command(bins(t).ctl, "update", "sign", "--key", key, "--board", board, "--version", "99.0.0",
			"--out", out, img).CombinedOutput(); err != nil {
			t.Fatalf("update sign: %v\n%s", err, b)
		}
	}
	box := fw.lab.Namespace(lab.RoleBox)
	// HTTPS with the box's own certificate, trusted on first use.
	known := filepath.Join(dir, "known_boxes")
	push := func(bundle string) (string, error) {
		b, err := exec.Command("ip", "netns", "exec", box, bins(t).ctl, "update", "push", "--reboot",
			"--box", "https://127.0.0.1:8444", "--known-boxes", known, bundle).CombinedOutput()
		return string(b), err
	}

	wrong := filepath.Join(dir, "rpi4.bundle")
	sign("rpi4", wrong)
	mark := fw.mark()
	if out, err := push(wrong); err == nil || !strings.Contains(out, "wrong-board") {
		t.Errorf("a bundle for rpi4: %v\n%s", err, out)
	}
	fw.waitEventAfter(t, mark, 5*time.Second, update.EvRejected, map[string]string{"reason": "wrong-board"})
	if st, _ := slots.State(); st.Try != "" {
		t.Errorf("slot %s to be tried after a refusal", st.Try)
	}

	good := filepath.Join(dir, "update.bundle")
	sign(fw.cfg.Board, good)
	mark = fw.mark()
	res, err := push(good)
	t.Logf("update push:\n%s", res)
	if err != nil || !strings.Contains(res, "installed") || !strings.Contains(res, "not possible") {
		t.Fatalf("update push: %v", err)
	}
	fw.waitEventAfter(t, mark, 5*time.Second, update.EvInstalled, map[string]string{"slot": "b", "version": "99.0.0"})
	b, _ := os.ReadFile(filepath.Join(dir, "slots", "b.img"))
	a, _ := os.ReadFile(filepath.Join(dir, "slots", "a.img"))
	if !bytes.Equal(b[:len(image)], image) || !bytes.Equal(a, slotA) {
		t.Error("slot b does not hold the image, or slot a was written")
	}
	if st, _ := slots.State(); st.Try != "b" || st.Running != "a" {
		t.Errorf("slots %+v", st)
	}
	if _, exited := fw.exited(); exited {
		t.Error("the daemon stopped: outside init an update must not restart anything")
	}
}
