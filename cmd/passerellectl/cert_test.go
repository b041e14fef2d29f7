package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/manage/fleettest"
)

// TestCertPushCLI: cert push checks the files before sending, the box
// refuses a certificate signed for another UAI, and a good one is
// installed: the box serves it at once, the known-boxes file trusts the
// new fingerprint, and the next command reaches the box with it.
func TestCertPushCLI(t *testing.T) {
	dir := t.TempDir()
	f, err := fleettest.Start(fleettest.Options{N: 1, Dir: filepath.Join(dir, "boxes"), Window: 2 * time.Second, Hold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := f.Boxes[0]
	keyPath := filepath.Join(dir, "noc.key")
	kf, _ := json.Marshal(keyFile{KeyID: f.Key.ID, PrivateKey: base64.StdEncoding.EncodeToString(f.Key.Private)})
	os.WriteFile(keyPath, kf, 0o600)
	known := filepath.Join(dir, "known_boxes")
	now := time.Now()
	write := func(name string, nb, na time.Time) (string, string, string) {
		c, k, err := fleettest.Certificate("box.example", nb, na)
		if err != nil {
			t.Fatal(err)
		}
		cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		os.WriteFile(cp, c, 0o644)
		os.WriteFile(kp, k, 0o600)
		tc, _ := boxcert.Validate(c, k, now)
		return cp, kp, boxcert.Fingerprint(tc)
	}
	cert, key, fp := write("good", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	oldCert, oldKey, _ := write("old", now.AddDate(-1, 0, 0), now.Add(-time.Hour))

	// Checked here: an expired certificate is never sent.
	if _, errs, code := ctl(t, "cert", "push", "--key", keyPath, "--uai", b.UAI, "--box", b.URL, "--known-boxes", known, oldCert, oldKey); code != 1 || !strings.Contains(errs, "expired") {
		t.Errorf("expired certificate: %d %s", code, errs)
	}
	// The box refuses a certificate signed for another school.
	out, errs, code := ctl(t, "cert", "push", "--key", keyPath, "--uai", "0590000A", "--box", b.URL, "--fingerprint", b.Fingerprint, "--known-boxes", known, cert, key)
	if code != 1 || !strings.Contains(out, "rejected (wrong-uai)") {
		t.Errorf("wrong UAI: %d %s %s", code, out, errs)
	}
	if got := boxcert.Fingerprint(b.Cert.Current()); got != b.Fingerprint {
		t.Fatalf("the box serves %s after a refusal", got)
	}
	// First contact trusted on first use, then the push.
	out, errs, code = ctl(t, "cert", "push", "--key", keyPath, "--uai", b.UAI, "--box", b.URL, "--known-boxes", known, cert, key)
	if code != 0 || !strings.Contains(out, "certificate installed, fingerprint "+fp+" (was "+b.Fingerprint+")") {
		t.Fatalf("push: %d %s %s", code, out, errs)
	}
	if got := boxcert.Fingerprint(b.Cert.Current()); got != fp {
		t.Errorf("the box serves %s, want %s", got, fp)
	}
	if data, _ := os.ReadFile(known); !strings.Contains(string(data), fp) || strings.Contains(string(data), b.Fingerprint) {
		t.Errorf("known boxes after the push: %q, want the new fingerprint only", data)
	}
	if out, errs, code := ctl(t, "status", "--box", b.URL, "--known-boxes", known); code != 0 {
		t.Errorf("status after the push: %d %s %s", code, out, errs)
	}
}
