package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/manage/fleettest"
	"passerelle/pkg/nocsig"
	"passerelle/pkg/update"
)

// TestUpdateCLI: update sign and show, then push to one box (installed,
// slot b to be tried, reboot not possible outside init) and to an
// inventory in waves where the boxes of the second wave have slots too
// small: the push stops there.
func TestUpdateCLI(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(nil)
	key := nocsig.Key{ID: "noc-test", Private: priv}
	keyPath := filepath.Join(dir, "noc.key")
	kf, _ := json.Marshal(keyFile{KeyID: key.ID, PrivateKey: base64.StdEncoding.EncodeToString(priv)})
	os.WriteFile(keyPath, kf, 0o600)
	img := filepath.Join(dir, "slot.img")
	os.WriteFile(img, []byte(strings.Repeat("passerelle slot image\n", 50000)), 0o644)
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)

	bundle := filepath.Join(dir, "update.bundle")
	out, errs, code := ctl(t, "update", "sign", "--key", keyPath, "--board", "qemu-arm64", "--version", "0.2.0",
		"--file", kernel, "--out", bundle, img)
	if code != 0 || !strings.Contains(out, "version 0.2.0 for qemu-arm64, image 1100000 bytes") {
		t.Fatalf("update sign: %d %s %s", code, out, errs)
	}
	if _, errs, code := ctl(t, "update", "sign", "--key", keyPath, "--board", "qemu-arm64", "--version", "2.0", "--out", bundle+"2", img); code == 0 || !strings.Contains(errs, "MAJOR.MINOR.PATCH") {
		t.Errorf("a version that is not semantic was signed: %s", errs)
	}
	out, _, code = ctl(t, "update", "show", bundle)
	if code != 0 || !strings.Contains(out, `"path": "vmlinuz"`) || !strings.Contains(out, `"version": "0.2.0"`) {
		t.Errorf("update show: %s", out)
	}

	// Boxes: the real update API over file-backed slots.
	startBox := func(i int, slotSize int64) (string, update.FileSlots) {
		d := t.TempDir()
		s, err := update.CreateFileSlots(filepath.Join(d, "slots"), slotSize)
		if err != nil {
			t.Fatal(err)
		}
		u, err := update.New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, update.Options{Dir: filepath.Join(d, "results"), Target: s})
		if err != nil {
			t.Fatal(err)
		}
		uai := fleettest.UAI(i)
		tr := update.Trust{Keys: nocsig.Keys{key.ID: priv.Public().(ed25519.PublicKey)}, Board: "qemu-arm64", UAI: uai, Running: "0.1.0"}
		// HTTPS as on a box (httptest's certificate: trusted on first
		// use, each address once).
		srv := httptest.NewTLSServer(&manage.API{Update: &update.API{U: u, Trust: func() (update.Trust, error) {
			tr.Now = time.Now()
			return tr, nil
		}}})
		t.Cleanup(srv.Close)
		return srv.URL, s
	}
	url, slots := startBox(0, 2<<20)
	known := filepath.Join(dir, "known_boxes")
	out, errs, code = ctl(t, "update", "push", "--reboot", "--box", url, "--known-boxes", known, bundle)
	t.Logf("push:\n%s", out)
	if st, _ := slots.State(); code != 0 || st.Try != "b" || !strings.Contains(out, "installed") || !strings.Contains(out, "not possible") {
		t.Fatalf("update push --box: %d %s %s; slots %+v", code, out, errs, st)
	}

	csv := "uai,api\n"
	for i := range 10 {
		size := int64(2 << 20)
		if i >= 1 && i < 4 {
			size = 1 << 20 // too small
		}
		u, _ := startBox(i, size)
		csv += fmt.Sprintf("%s,%s\n", fleettest.UAI(i), strings.TrimPrefix(u, "https://"))
	}
	inv := filepath.Join(dir, "schools.csv")
	os.WriteFile(inv, []byte(csv), 0o644)
	out, errs, code = ctl(t, "update", "push", "--inventory", inv, "--url", "https://{api}", "--waves", "10%,50%,100%", "--max-failure", "20%", "--known-boxes", known, bundle)
	t.Logf("push in waves:\n%s%s", out, errs)
	if code != 1 || !strings.Contains(out, "STOPPED after wave 1") || strings.Count(out, "too-large: the image") != 3 || strings.Count(out, " installed ") != 2 {
		t.Errorf("update push in waves: %d", code)
	}
	out, _, _ = ctl(t, "update", "push", "--json", "--inventory", inv, "--url", "https://{api}", "--waves", "10%,100%", "--max-failure", "50%", "--known-boxes", known, bundle)
	var rep manage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Pushed != 10 || rep.Failed != 3 {
		t.Errorf("update push --json: %+v %v", rep, err)
	}
}
