package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/manage"
	"passerelle/pkg/manage/fleettest"
)

func ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestManageCLI: keygen, sign, publish, then push in waves to simulated
// boxes (2 of 20 failing their gate), status and generations.
func TestManageCLI(t *testing.T) {
	dir := t.TempDir()
	// keygen writes a key and prints the trusted_keys entry.
	out, errs, code := ctl(t, "keygen", "--id", "noc-test", "--out", filepath.Join(dir, "new.key"))
	if code != 0 || !strings.Contains(out, "- name: noc-test\n  public_key: ") {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if _, _, code := ctl(t, "keygen", "--id", "x", "--out", filepath.Join(dir, "new.key")); code == 0 {
		t.Error("keygen overwrote a key")
	}

	f, err := fleettest.Start(fleettest.Options{N: 20, FailShare: 0.1, Seed: 3, Dir: filepath.Join(dir, "boxes"),
		Window: 2 * time.Second, Hold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keyPath := filepath.Join(dir, "noc.key")
	kf, _ := json.Marshal(keyFile{KeyID: f.Key.ID, PrivateKey: base64.StdEncoding.EncodeToString(f.Key.Private)})
	os.WriteFile(keyPath, kf, 0o600)
	configs := filepath.Join(dir, "configs")
	os.MkdirAll(configs, 0o755)
	csv := "uai,api\n"
	for i, b := range f.Boxes {
		os.WriteFile(filepath.Join(configs, b.UAI+".yaml"), []byte(fleettest.Config(i, "v2", f.Key)), 0o644)
		csv += b.UAI + "," + strings.TrimPrefix(b.URL, "http://") + "\n"
	}
	inv := filepath.Join(dir, "schools.csv")
	os.WriteFile(inv, []byte(csv), 0o644)

	// sign: a bundle the box's checks accept.
	bundle := filepath.Join(dir, "one.bundle")
	if _, errs, code := ctl(t, "sign", "--key", keyPath, "--version", "7", "--out", bundle, filepath.Join(configs, f.Boxes[0].UAI+".yaml")); code != 0 {
		t.Fatalf("sign: %s", errs)
	}
	data, _ := os.ReadFile(bundle)
	if _, signer, err := manage.Open(data, manage.Trust{Keys: map[string]ed25519.PublicKey{}, UAI: f.Boxes[0].UAI, Now: time.Now()}); err == nil || signer != "" {
		t.Fatalf("a bundle opened without its key")
	}

	// publish: one bundle per box and an index.
	pub := filepath.Join(dir, "pub")
	out, errs, code = ctl(t, "publish", "--key", keyPath, "--version", "7", "--out", pub, "--configs", configs, "--json")
	var rep publishReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Published) != 20 {
		t.Fatalf("publish: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(pub, f.Boxes[3].UAI+".bundle")); err != nil {
		t.Fatal(err)
	}

	// push in waves: 2 failing boxes of 20 pass a 5 % threshold.
	out, errs, code = ctl(t, "push", "--key", keyPath, "--version", "8", "--inventory", inv, "--configs", configs,
		"--url", "http://{api}", "--waves", "25%,50%,100%", "--max-failure", "5%")
	t.Logf("push:\n%s%s", out, errs)
	if code != 1 || !strings.Contains(out, "rolled-back") {
		t.Fatalf("push: %d", code)
	}
	// status names the rolled-back boxes and why.
	out, _, _ = ctl(t, "status", "--inventory", inv, "--url", "http://{api}")
	t.Logf("status:\n%s", out)
	for _, uai := range f.Failing() {
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, uai) && strings.Contains(line, "rolled-back") && !strings.Contains(line, "health-gate: uplinks: no uplink online") {
				t.Errorf("status line: %s", line)
			}
		}
	}
	// generations of a box that committed, diff and rollback.
	var ok *fleettest.Box
	for _, b := range f.Boxes {
		if !b.Failing {
			ok = b
			break
		}
	}
	out, _, code = ctl(t, "push", "--key", keyPath, "--version", "9", "--box", ok.URL, filepath.Join(configs, ok.UAI+".yaml"))
	if code != 0 {
		t.Fatalf("push one: %s", out)
	}
	out, _, code = ctl(t, "generations", "list", "--box", ok.URL)
	t.Logf("generations:\n%s", out)
	if code != 0 || !strings.Contains(out, "committed") || !strings.Contains(out, "noc-sim") {
		t.Fatalf("generations list: %d", code)
	}
	out, _, _ = ctl(t, "generations", "diff", "--box", ok.URL, "1", "2")
	if !strings.Contains(out, "-  name: base") || !strings.Contains(out, "+  name: v2") {
		t.Errorf("diff:\n%s", out)
	}
	out, errs, code = ctl(t, "generations", "rollback", "--box", ok.URL, "--to", "1", "--key", keyPath)
	if code != 0 || !strings.Contains(out, "committed") {
		t.Fatalf("rollback: %d %s %s", code, out, errs)
	}
	if ok.M.Config().Identity.Name != "base" {
		t.Errorf("after rollback the box runs %q", ok.M.Config().Identity.Name)
	}
}
