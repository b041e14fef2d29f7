package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTunnelEnrolsWhenTheKeyArrives: a box whose auth key is not installed
// runs tailscaled all the same (no crash loop), says in a warning and on
// its status screen which file lacks the key, tells an unusable key and
// one the academy's control server refuses from a missing one, enrols
// within seconds of the right key being written, and keeps its tunnel
// after the one-shot key is removed, across a tailscaled restart.
func TestTunnelEnrolsWhenTheKeyArrives(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	tl := startTunnelLabKey(t, false, "--control-socket", sock)
	write := func(content string) int {
		t.Helper()
		mark := tl.mark()
		if err := os.WriteFile(tl.key, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return mark
	}

	// 1. No key: tailscaled runs and waits; the warning and the screen
	// name the file.
	tl.waitEvent(t, 10*time.Second, "tunnel-key", map[string]string{"file": tl.key, "state": "missing"})
	tl.waitEvent(t, 60*time.Second, "tunnel-enrolment", map[string]string{"file": tl.key, "state": "no-key"})
	tl.waitEvent(t, 10*time.Second, "health-raised", map[string]string{"code": "tunnel-not-enrolled"})
	line := tl.tunnelLine(t, sock)
	if line.Level != "bad" || !strings.Contains(line.Text, tl.key) || line.Advice == "" {
		t.Errorf("status screen's tunnel line without a key: %+v", line)
	}

	// 2. A file that cannot be a key: said apart, tailscaled not restarted.
	mark := write("tskey-lab-0123\ntskey-lab-4567\n")
	tl.waitEventAfter(t, mark, 20*time.Second, "tunnel-key", map[string]string{"file": tl.key, "state": "invalid"})
	tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-enrolment", map[string]string{"file": tl.key, "state": "key-invalid"})
	tl.waitEventAfter(t, mark, 10*time.Second, "health-raised", map[string]string{"code": "tunnel-key-invalid"})
	tl.waitEventAfter(t, mark, 10*time.Second, "health-cleared", map[string]string{"code": "tunnel-not-enrolled"})
	if n := len(tl.log.find(mark, "tunnel-restart", nil)); n != 0 {
		t.Errorf("tailscaled restarted %d times for a key file that holds no key", n)
	}

	// 3. A well-formed key the academy does not know: tailscaled restarts
	// with it, and the control server's refusal is reported.
	mark = write("tskey-lab-00000000000000000000000000000000\n")
	written := time.Now()
	tl.waitEventAfter(t, mark, 20*time.Second, "tunnel-restart", map[string]string{"why": "auth-key"})
	refused := tl.waitEventAfter(t, mark, 90*time.Second, "tunnel-enrolment", map[string]string{"file": tl.key, "state": "key-refused"})
	t.Logf("a key the academy does not know: refusal reported %s after it was written", refused.Sub(written).Round(time.Millisecond))

	// 4. The right key: enrolled and up without a reboot.
	mark = write(tl.acad.AuthKey() + "\n")
	written = time.Now()
	tl.waitEventAfter(t, mark, 20*time.Second, "tunnel-restart", map[string]string{"why": "auth-key"})
	tl.waitEventAfter(t, mark, 60*time.Second, "tunnel-enrolment", map[string]string{"file": tl.key, "state": "enrolled"})
	up := tl.waitEventAfter(t, mark, 90*time.Second, "tunnel-state", map[string]string{"state": "up"})
	t.Logf("tunnel up %s after the key was written", up.Sub(written).Round(time.Millisecond))
	tl.waitEventAfter(t, mark, 10*time.Second, "health-cleared", map[string]string{"code": "tunnel-key-invalid"})
	tl.waitReach(t, 30*time.Second)
	if line := tl.tunnelLine(t, sock); line.Level != "ok" {
		t.Errorf("status screen's tunnel line once enrolled: %+v", line)
	}

	// No crash loop while the box waited for its key: tailscaled never
	// exited by itself (the restarts above were the tunnel's own).
	if rs := tl.events("service-restart", map[string]string{"service": "tailscaled"}); len(rs) != 0 {
		t.Errorf("tailscaled exited %d times by itself (first: %s)", len(rs), rs[0].str("exit"))
	}
	if rs := tl.events("service-failed", map[string]string{"service": "tailscaled"}); len(rs) != 0 {
		t.Errorf("tailscaled marked failed: %s", rs[0].str("reason"))
	}

	// 5. The one-shot key removed after enrolment: a restarted tailscaled
	// starts from its state, once, and the box is still enrolled (no
	// warning about a key). The lab's control server (testcontrol) wants
	// the key at every login, where Headscale accepts a known node's key:
	// so here the tunnel stays down until the key is back, which also
	// shows that a key written while tailscaled is out of the tailnet
	// restarts it.
	mark = tl.mark()
	if err := os.Remove(tl.key); err != nil {
		t.Fatal(err)
	}
	tl.waitEventAfter(t, mark, 20*time.Second, "tunnel-key", map[string]string{"file": tl.key, "state": "missing"})
	pid := tl.tailscaledPID(t)
	killed := tl.mark()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tl.waitEventAfter(t, killed, 10*time.Second, "service-restart", map[string]string{"service": "tailscaled"})
	tl.waitEventAfter(t, killed, 30*time.Second, "service-ready", map[string]string{"service": "tailscaled"})
	waitUntil(t, "the restarted tailscaled answering the tunnel's status", 30*time.Second, func() bool {
		for _, r := range tl.log.find(killed, "tunnel-state", nil) {
			if r.str("backend") != "" {
				return true
			}
		}
		return false
	})
	mark2 := write(tl.acad.AuthKey() + "\n")
	tl.waitEventAfter(t, mark2, 20*time.Second, "tunnel-restart", map[string]string{"why": "auth-key"})
	tl.waitEventAfter(t, mark2, 90*time.Second, "tunnel-state", map[string]string{"state": "up"})
	tl.waitReach(t, 30*time.Second)
	if rs := tl.log.find(killed, "service-restart", map[string]string{"service": "tailscaled"}); len(rs) != 1 {
		t.Errorf("tailscaled exited %d times after one kill, without its key file", len(rs))
	}
	for _, code := range []string{"tunnel-not-enrolled", "tunnel-key-invalid"} {
		if rs := tl.log.find(mark, "health-raised", map[string]string{"code": code}); len(rs) != 0 {
			t.Errorf("%s raised for an enrolled box without its key: %s", code, rs[0].str("message"))
		}
	}
	if rs := tl.log.find(mark, "tunnel-enrolment", nil); len(rs) != 0 {
		t.Errorf("enrolment changed to %s for an enrolled box without its key", rs[0].str("state"))
	}
}

// screenLine is one line of passerelle status --json.
type screenLine struct {
	Key, Level, Text, Advice string
}

// tunnelLine is the tunnel's line of the status screen, read through the
// control socket as a technician's passerelle status does.
func (tl *tunnelLab) tunnelLine(t *testing.T, sock string) screenLine {
	t.Helper()
	// Exit status 1 while a warning is critical: the screen is printed all
	// the same.
	out, _ := exec.Command(bins(t).passerelle, "status", "--json", "--socket", sock).Output()
	var screen struct{ Lines []screenLine }
	if err := json.Unmarshal(out, &screen); err != nil {
		t.Fatalf("passerelle status: %v %s", err, out)
	}
	for _, l := range screen.Lines {
		if l.Key == "tunnel" {
			return l
		}
	}
	t.Fatalf("no tunnel line in passerelle status: %s", out)
	return screenLine{}
}
