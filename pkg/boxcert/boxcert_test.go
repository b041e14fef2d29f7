package boxcert

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCertificateKeptAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreate(dir, "passerelle-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := LoadOrCreate(dir, "passerelle-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(c1) != Fingerprint(c2) || len(Fingerprint(c1)) != 95 {
		t.Errorf("fingerprints %s / %s", Fingerprint(c1), Fingerprint(c2))
	}
	c3, _ := LoadOrCreate("", "passerelle-test", time.Now())
	if Fingerprint(c3) == Fingerprint(c1) {
		t.Error("an in-memory certificate has the kept one's fingerprint")
	}
}

func TestParseFingerprint(t *testing.T) {
	c, _ := LoadOrCreate("", "x", time.Now())
	fp := Fingerprint(c)
	plain := strings.ReplaceAll(fp, ":", "")
	for _, tt := range []struct {
		in, err string
	}{
		{fp, ""},
		{strings.ToLower(fp), ""},
		{plain, ""},
		{"sha256:" + strings.ToLower(plain), ""},
		{"SHA256 Fingerprint=" + fp, ""},
		{"  " + fp + "\n", ""},
		{fp[:len(fp)-3], "32 hex pairs"},
		{"zz" + plain[2:], "32 hex pairs"},
		{"", "32 hex pairs"},
	} {
		got, err := ParseFingerprint(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != fp):
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", tt.in, got, err, fp)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseFingerprint(%q): error %v, want %q", tt.in, err, tt.err)
		}
	}
}

// box is a TLS server with its own self-signed certificate, as a box's
// management API.
func box(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	c, err := LoadOrCreate("", "box", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{c}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, Fingerprint(c)
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// TestPinnedFingerprint: a box is reached only when its certificate has
// the pinned fingerprint; another certificate at the same address is
// refused with both fingerprints, as is an unpinned box without a
// known-boxes file.
func TestPinnedFingerprint(t *testing.T) {
	srv, fp := box(t)
	addr := srv.Listener.Addr().String()
	_, other := box(t)
	for _, tt := range []struct {
		name string
		pins Pins
		err  string
	}{
		{"pinned, same", Pins{Pinned: map[string]string{addr: fp}}, ""},
		{"pinned, other", Pins{Pinned: map[string]string{addr: other}, Names: map[string]string{addr: "0599999Y"}},
			"box 0599999Y at " + addr + ": certificate fingerprint " + fp + " is not the pinned " + other + ": refused"},
		{"not pinned, no file", Pins{}, "no fingerprint pinned and no known-boxes file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pins := tt.pins
			err := get(&http.Client{Transport: Transport(pins.Check)}, srv.URL)
			if tt.err == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("error %v, want %q", err, tt.err)
			}
			var me *MismatchError
			if tt.name == "pinned, other" && (!errors.As(err, &me) || me.Got != fp || me.Want != other) {
				t.Errorf("not a MismatchError with both fingerprints: %v", err)
			}
		})
	}
}

// TestTrustOnFirstUse: the first contact with a box records its
// fingerprint (written atomically by Save, one line per box); later
// contacts, in this run or the next, accept only that certificate; a
// box presenting another one is refused with a clear error naming the
// box, both fingerprints and the file; the file keeps what it knew.
func TestTrustOnFirstUse(t *testing.T) {
	srv, fp := box(t)
	addr := srv.Listener.Addr().String()
	file := filepath.Join(t.TempDir(), "conf", "known_boxes")
	kb, err := OpenKnownBoxes(file)
	if err != nil {
		t.Fatal(err)
	}
	pins := &Pins{Known: kb, Names: map[string]string{addr: "0599999Y"}}
	c := &http.Client{Transport: Transport(pins.Check)}
	for range 2 {
		if err := get(c, srv.URL); err != nil {
			t.Fatalf("first use: %v", err)
		}
		c.CloseIdleConnections()
	}
	if kb.Added() != 1 {
		t.Fatalf("%d boxes added, want 1", kb.Added())
	}
	if err := kb.Save(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), addr+" "+fp+" 0599999Y\n") {
		t.Fatalf("known boxes file: %q, %v", data, err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", st.Mode())
	}

	// The next run: the same box is accepted, nothing to save.
	kb2, err := OpenKnownBoxes(file)
	if err != nil {
		t.Fatal(err)
	}
	pins2 := &Pins{Known: kb2}
	if err := get(&http.Client{Transport: Transport(pins2.Check)}, srv.URL); err != nil || kb2.Added() != 0 {
		t.Fatalf("known box: %v, added %d", err, kb2.Added())
	}

	// Another certificate at the same address (the box replaced, or a
	// machine in the middle): refused, whatever the pins of this run say
	// of other boxes, and the file is unchanged.
	srv.Close()
	impostor, ifp := box(t)
	pins2.Known = kb2
	err = get(&http.Client{Transport: Transport(func(_, got string) error { return pins2.Check(addr, got) })}, impostor.URL)
	var me *MismatchError
	if !errors.As(err, &me) || me.Want != fp || me.Got != ifp {
		t.Fatalf("changed certificate: %v", err)
	}
	for _, want := range []string{"box 0599999Y at " + addr, "certificate fingerprint changed", "known " + fp, "now " + ifp, file} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if after, _ := os.ReadFile(file); string(after) != string(data) || kb2.Save() != nil {
		t.Errorf("the file changed: %q", after)
	}
}

// TestKnownBoxesFile: a bad line is reported with its place; a second
// run saving at the same time loses nothing, and a conflict keeps the
// file's fingerprint.
func TestKnownBoxesFile(t *testing.T) {
	dir := t.TempDir()
	fpA := strings.Repeat("AA:", 31) + "AA"
	fpB := strings.Repeat("BB:", 31) + "BB"
	for _, tt := range []struct{ text, err string }{
		{"# comment\n\n10.0.0.1:8443 " + fpA + " 0599999Y\n", ""},
		{"10.0.0.1:8443\n", "known_boxes:1: expected ADDRESS FINGERPRINT [UAI]"},
		{"10.0.0.1 " + fpA + "\n", "known_boxes:1: address"},
		{"# x\n10.0.0.1:8443 nothex\n", "known_boxes:2: fingerprint"},
		{"10.0.0.1:8443 " + fpA + "\n10.0.0.1:8443 " + fpB + "\n", "known_boxes:2: 10.0.0.1:8443 is listed twice"},
	} {
		f := filepath.Join(dir, "known_boxes")
		os.WriteFile(f, []byte(tt.text), 0o600)
		_, err := OpenKnownBoxes(f)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: %v, want %q", tt.text, err, tt.err)
		}
	}

	f := filepath.Join(dir, "shared")
	one, _ := OpenKnownBoxes(f)
	two, _ := OpenKnownBoxes(f)
	one.Check("10.0.0.1:8443", "0599999Y", fpA)
	two.Check("10.0.0.2:8443", "0599998X", fpB)
	two.Check("10.0.0.1:8443", "", fpB)
	if err := one.Save(); err != nil {
		t.Fatal(err)
	}
	if err := two.Save(); err == nil || !strings.Contains(err.Error(), "10.0.0.1:8443: "+fpA+" kept") {
		t.Errorf("conflicting save: %v", err)
	}
	kb, err := OpenKnownBoxes(f)
	if err != nil {
		t.Fatal(err)
	}
	if kb.Check("10.0.0.1:8443", "", fpA) != nil || kb.Check("10.0.0.2:8443", "", fpB) != nil || kb.Added() != 0 {
		t.Errorf("merged file: %v", kb.known)
	}
}
