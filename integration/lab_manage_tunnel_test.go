package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/types/logger"

	"passerelle/pkg/lab"
	"passerelle/pkg/lab/academy"
	"passerelle/pkg/manage"
)

// TestManagePushTunnel: the NOC pushes a bundle over the academy tunnel.
// The management API listens on the box's tailnet address only, over TLS
// with the box's own certificate (the status page's, whose fingerprint
// the control socket reports); a datacenter node without the NOC's tag is
// refused (LocalAPI WhoIs); once the coordination server tags it
// tag:noc, passerellectl push from the datacenter's namespace, pinning
// the box's fingerprint, gets the box's verdict: committed. A wrong pin
// is refused before anything is sent; an unpinned status call trusts the
// box on first use and keeps its fingerprint.
func TestManagePushTunnel(t *testing.T) {
	needRoot(t)
	ts, err := tailscaledBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nocKey := filepath.Join(dir, "noc.key")
	k := nocKeygen(t, bins(t).ctl, "noc-lab", nocKey)
	keyFile := filepath.Join(dir, "perm", "tunnel", "authkey")
	cfg := readDemo(t) + fmt.Sprintf(tunnelConfigTail, "https://203.0.113.100:443", keyFile, academy.DefaultPrefix) +
		fmt.Sprintf("management:\n  trusted_keys:\n    - name: noc-lab\n      public_key: %s\n", k.PublicKey)
	fw := labFor(t, []byte(cfg), nil)
	a, err := academy.Start(academy.Options{Lab: fw.lab, Tailscaled: ts, Dir: filepath.Join(dir, "academy"), Logf: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if err := a.StartRouter(); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(keyFile), 0o700)
	if err := os.WriteFile(keyFile, []byte(a.AuthKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", a.CAFile())
	state := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "control.sock")
	fw.launch(t, state, "--tunnel-run-dir", filepath.Join(dir, "run"), "--manage-dir", filepath.Join(state, "manage"),
		"--confirm-timeout", manageConfirm.String(), "--control-socket", sock)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	r := fw.waitRecord(t, fw.from, 60*time.Second, "manage-api-listening", map[string]string{"tls": "true"})
	api := "https://" + r.str("addr")
	// The fingerprint the technician reads on the box's screen.
	// (Exit status 1 while a warning is critical: the screen is printed all the same.)
	out, _ := exec.Command(bins(t).passerelle, "status", "--json", "--socket", sock).Output()
	var screen struct{ Fingerprint string }
	if err := json.Unmarshal(out, &screen); err != nil || len(screen.Fingerprint) != 95 {
		t.Fatalf("passerelle status: %v %s", err, out)
	}
	known := filepath.Join(dir, "known_boxes")
	if !strings.HasPrefix(r.str("addr"), "100.") {
		t.Fatalf("API listening on %s, not a tailnet address", r.str("addr"))
	}

	// The new configuration, signed by the NOC.
	data, _ := os.ReadFile(fw.path)
	newCfg := filepath.Join(dir, "v1", "0599999Y.yaml")
	os.MkdirAll(filepath.Dir(newCfg), 0o755)
	os.WriteFile(newCfg, []byte(strings.Replace(string(data), "deny: [bad.lab.test]", "deny: [bad.lab.test, worse.lab.test]", 1)), 0o644)
	ctl := func(args ...string) (string, error) {
		cmd := exec.Command(bins(t).ctl, args...)
		var o strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &o
		if err := lab.StartCommand(fw.lab.Namespace(lab.RoleAcademy), cmd); err != nil {
			return "", err
		}
		err := cmd.Wait()
		return o.String(), err
	}
	push := func() (string, error) {
		return ctl("push", "--json", "--key", nocKey, "--version", "1", "--box", api, "--fingerprint", screen.Fingerprint, "--known-boxes", known, newCfg)
	}
	// The datacenter's node has no tag yet: refused.
	var last string
	waitUntil(t, "the API refusing the untagged datacenter node", 30*time.Second, func() bool {
		last, _ = push()
		return strings.Contains(last, "none of the NOC's tags")
	})
	// A wrong pin: the handshake is refused before any request.
	wrong := strings.Repeat("AB:", 31) + "AB"
	last, _ = ctl("push", "--json", "--key", nocKey, "--version", "1", "--box", api, "--fingerprint", wrong, "--known-boxes", known, newCfg)
	if !strings.Contains(last, "certificate fingerprint "+screen.Fingerprint+" is not the pinned "+wrong) {
		t.Errorf("push with a wrong pin: %s", last)
	}
	// The coordination server tags it as the NOC's.
	for _, n := range a.Control().AllNodes() {
		if n.Hostinfo.Valid() && n.Hostinfo.Hostname() == "academy-dc" {
			n.Tags = []string{"tag:noc"}
			a.Control().UpdateNode(n)
		}
	}
	mark := fw.mark()
	waitUntil(t, "the push accepted from the tagged node", 30*time.Second, func() bool {
		last, _ = push()
		return !strings.Contains(last, "none of the NOC's tags")
	})
	var rep manage.Report
	if err := json.Unmarshal([]byte(last), &rep); err != nil || len(rep.Outcomes) != 1 || rep.Outcomes[0].Outcome != manage.OutcomeCommitted {
		t.Fatalf("push: %s", last)
	}
	fw.waitEventAfter(t, mark, time.Second, manage.EvBundleCommitted, nil)
	t.Logf("pushed over the tunnel (TLS, pinned %s) and committed in %s", screen.Fingerprint[:11], rep.Took.Round(time.Millisecond))
	// Unpinned: trusted on first use, and kept.
	if last, err := ctl("status", "--box", api, "--known-boxes", known); err != nil || !strings.Contains(last, "committed") {
		t.Errorf("status: %v %s", err, last)
	}
	if data, _ := os.ReadFile(known); !strings.Contains(string(data), r.str("addr")+" "+screen.Fingerprint) {
		t.Errorf("known boxes: %q", data)
	}
}
