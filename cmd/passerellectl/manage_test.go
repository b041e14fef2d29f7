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
	// Half the boxes pinned by the inventory's fingerprint column, the
	// others trusted on first use.
	csv := "uai,api,fingerprint\n"
	for i, b := range f.Boxes {
		os.WriteFile(filepath.Join(configs, b.UAI+".yaml"), []byte(fleettest.Config(i, "v2", f.Key)), 0o644)
		fp := ""
		if i%2 == 0 {
			fp = b.Fingerprint
		}
		csv += b.UAI + "," + strings.TrimPrefix(b.URL, "https://") + "," + fp + "\n"
	}
	known := filepath.Join(dir, "known_boxes")
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
		"--url", "https://{api}", "--waves", "25%,50%,100%", "--max-failure", "5%", "--known-boxes", known)
	t.Logf("push:\n%s%s", out, errs)
	if code != 1 || !strings.Contains(out, "rolled-back") {
		t.Fatalf("push: %d", code)
	}
	// status names the rolled-back boxes and why.
	out, _, _ = ctl(t, "status", "--inventory", inv, "--url", "https://{api}", "--known-boxes", known)
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
	out, _, code = ctl(t, "push", "--key", keyPath, "--version", "9", "--box", ok.URL, "--fingerprint", ok.Fingerprint, filepath.Join(configs, ok.UAI+".yaml"))
	if code != 0 {
		t.Fatalf("push one: %s", out)
	}
	out, _, code = ctl(t, "generations", "list", "--box", ok.URL, "--known-boxes", known)
	t.Logf("generations:\n%s", out)
	if code != 0 || !strings.Contains(out, "committed") || !strings.Contains(out, "noc-sim") {
		t.Fatalf("generations list: %d", code)
	}
	out, _, _ = ctl(t, "generations", "diff", "--box", ok.URL, "--known-boxes", known, "1", "2")
	if !strings.Contains(out, "-  name: base") || !strings.Contains(out, "+  name: v2") {
		t.Errorf("diff:\n%s", out)
	}
	out, errs, code = ctl(t, "generations", "rollback", "--box", ok.URL, "--to", "1", "--key", keyPath, "--known-boxes", known)
	if code != 0 || !strings.Contains(out, "committed") {
		t.Fatalf("rollback: %d %s %s", code, out, errs)
	}
	if ok.M.Config().Identity.Name != "base" {
		t.Errorf("after rollback the box runs %q", ok.M.Config().Identity.Name)
	}
}

// TestManageCLIChecksTheBox: the management API is HTTPS with the box's
// own certificate; passerellectl reaches a box only with the pinned
// fingerprint or, unpinned, the one it trusted the first time; another
// certificate is refused with an error naming the box and both
// fingerprints, and nothing is pushed to it.
func TestManageCLIChecksTheBox(t *testing.T) {
	dir := t.TempDir()
	f, err := fleettest.Start(fleettest.Options{N: 2, Dir: filepath.Join(dir, "boxes"), Window: 2 * time.Second, Hold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keyPath := filepath.Join(dir, "noc.key")
	kf, _ := json.Marshal(keyFile{KeyID: f.Key.ID, PrivateKey: base64.StdEncoding.EncodeToString(f.Key.Private)})
	os.WriteFile(keyPath, kf, 0o600)
	b, other := f.Boxes[0], f.Boxes[1]
	cfg := filepath.Join(dir, b.UAI+".yaml")
	os.WriteFile(cfg, []byte(fleettest.Config(0, "v2", f.Key)), 0o644)
	known := filepath.Join(dir, "known_boxes")
	addr := strings.TrimPrefix(b.URL, "https://")

	// Plain HTTP is refused before anything is sent.
	if _, errs, code := ctl(t, "status", "--box", "http://"+addr, "--known-boxes", known); code != 2 || !strings.Contains(errs, "HTTPS only") {
		t.Errorf("http URL: %d %s", code, errs)
	}
	// A wrong pin: refused, both fingerprints named, nothing pushed.
	out, _, code := ctl(t, "push", "--key", keyPath, "--version", "5", "--box", b.URL, "--fingerprint", other.Fingerprint, "--known-boxes", known, cfg)
	if code != 1 || !strings.Contains(out, "unreachable") || !strings.Contains(out, "certificate fingerprint "+b.Fingerprint+" is not the pinned "+other.Fingerprint) {
		t.Errorf("wrong pin: %d %s", code, out)
	}
	if st := b.M.Status(); st.Highest != 0 || st.Last != nil {
		t.Errorf("the box got the bundle despite the wrong pin: %+v", st)
	}
	if _, _, code := ctl(t, "status", "--box", b.URL, "--fingerprint", "12:34", "--known-boxes", known); code != 2 {
		t.Errorf("a malformed fingerprint was accepted")
	}
	// First use: trusted and kept in the known-boxes file.
	out, errs, code := ctl(t, "status", "--box", b.URL, "--known-boxes", known)
	data, _ := os.ReadFile(known)
	if code != 0 || !strings.Contains(errs, "1 new boxes trusted on first use") || !strings.Contains(string(data), addr+" "+b.Fingerprint+"\n") {
		t.Fatalf("first use: %d %s %s; file %q", code, out, errs, data)
	}
	// The box's certificate changes (here: the file remembers another
	// one at that address): refused by every command.
	os.WriteFile(known, []byte(addr+" "+other.Fingerprint+" "+b.UAI+"\n"), 0o600)
	out, _, code = ctl(t, "push", "--key", keyPath, "--version", "6", "--box", b.URL, "--known-boxes", known, cfg)
	want := "box " + b.UAI + " at " + addr + ": certificate fingerprint changed: known " + other.Fingerprint + ", now " + b.Fingerprint
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, known) {
		t.Errorf("changed certificate, push: %d %s\nwant %s", code, out, want)
	}
	if st := b.M.Status(); st.Highest != 0 {
		t.Errorf("the box got the bundle despite the changed certificate: %+v", st)
	}
	for _, args := range [][]string{{"status", "--box", b.URL}, {"generations", "list", "--box", b.URL}} {
		out, errs, code := ctl(t, append(args, "--known-boxes", known)...)
		if code == 0 || !strings.Contains(out+errs, "certificate fingerprint changed: known "+other.Fingerprint+", now "+b.Fingerprint) {
			t.Errorf("%v: %d %s %s", args, code, out, errs)
		}
	}
	if after, _ := os.ReadFile(known); !strings.Contains(string(after), other.Fingerprint) || strings.Contains(string(after), b.Fingerprint) {
		t.Errorf("the known-boxes file changed: %q", after)
	}
	// The right pin wins over the file: the push goes through.
	out, _, code = ctl(t, "push", "--key", keyPath, "--version", "7", "--box", b.URL, "--fingerprint", strings.ToLower(b.Fingerprint), "--known-boxes", known, cfg)
	if code != 0 || !strings.Contains(out, "committed") {
		t.Errorf("pinned push: %d %s", code, out)
	}
}
