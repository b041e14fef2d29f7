package ut1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestStoreUpdateRefusalsKeepLastGood: an http source, a tampered
// archive, a gzip bomb, too many lines and a damaged archive are each
// refused, and the lists stored and loaded at boot stay the last good
// ones, with nothing left behind (issue 12).
func TestStoreUpdateRefusalsKeepLastGood(t *testing.T) {
	mirror := &fakeMirror{archive: sampleArchive(t, 100)}
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		mirror.ServeHTTP(w, r)
	}))
	defer srv.Close()
	source := srv.URL + "/blacklists.tar.gz"
	dir := t.TempDir()
	s := &Store{Dir: dir, MaxShrink: 50, Client: srv.Client()}
	ctx := context.Background()
	opt := Options{MaxBytes: 1 << 20, MaxLines: 10_000}
	good, err := s.Update(ctx, source, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := os.ReadFile(filepath.Join(dir, manifestName))

	// The same mirror over plain http: refused before any request (the
	// checksum beside the archive proves nothing without TLS).
	mirror.archive = sampleArchive(t, 120)
	before := requests.Load()
	if _, err := s.Update(ctx, "http://"+strings.TrimPrefix(srv.URL, "https://")+"/blacklists.tar.gz", good, opt); !errors.Is(err, ErrInsecureSource) {
		t.Errorf("http source: err = %v, want ErrInsecureSource", err)
	}
	if requests.Load() != before {
		t.Error("http source: a request was made")
	}

	bomb := makeTarGz(t, []tarEntry{
		{name: "blacklists/adult/usage", body: "black\n"},
		// 8 MiB in 8,200 lines: a few KiB compressed.
		{name: "blacklists/adult/domains", body: strings.Repeat(strings.Repeat("a", 1023)+"\n", 8<<10)},
	})
	var lines bytes.Buffer
	for range 20_000 {
		lines.WriteString("same.example\n")
	}
	many := makeTarGz(t, []tarEntry{{name: "blacklists/adult/usage", body: "black\n"}, {name: "blacklists/adult/domains", body: lines.String()}})
	tampered := sampleArchive(t, 130)
	tampered[len(tampered)/2] ^= 0xff
	var le *LimitError
	var ce *ChecksumError
	for _, tc := range []struct {
		name    string
		archive []byte
		sum     string // "" = the archive's
		check   func(error) bool
	}{
		{"gzip bomb", bomb, "", func(err error) bool { return errors.As(err, &le) && le.What == "unpacked bytes" }},
		{"too many lines", many, "", func(err error) bool { return errors.As(err, &le) && le.What == "lines" }},
		{"tampered archive, published sum of the original", tampered, sha(sampleArchive(t, 130)), func(err error) bool { return errors.As(err, &ce) }},
		{"tampered archive, sum recomputed", tampered, "", func(err error) bool { return err != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.archive) > 64<<10 {
				t.Fatalf("the test archive is %d bytes: not a bomb", len(tc.archive))
			}
			mirror.archive, mirror.sum = tc.archive, tc.sum
			l, err := s.Update(ctx, source, good, opt)
			if l != nil || !tc.check(err) {
				t.Fatalf("Update = %v, %v", l, err)
			}
			t.Logf("refused: %v", err)
			if m, _ := os.ReadFile(filepath.Join(dir, manifestName)); !bytes.Equal(m, manifest) {
				t.Errorf("manifest changed:\n%s", m)
			}
			if l, err := s.Load(Options{}); err != nil || l.Version != good.Version {
				t.Errorf("boot load after a refused update: %v, %v", l, err)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dir, ".download-*")); len(leftovers) > 0 {
				t.Errorf("temporary downloads left behind: %v", leftovers)
			}
		})
	}
}

// TestDuplicatesCountedOnce: repeated lines are one entry, and a list
// padded with duplicates cannot hide a shrink.
func TestDuplicatesCountedOnce(t *testing.T) {
	var b bytes.Buffer
	for range 3 {
		b.WriteString("a.example\nb.example\nA.EXAMPLE.\n*.b.example\n9.9.9.9\n")
	}
	arc := makeTarGz(t, []tarEntry{{name: "blacklists/doh/domains", body: b.String()}})
	l, err := ReadTarGz(bytes.NewReader(arc), "v", Options{Keep: []string{"doh"}})
	if err != nil {
		t.Fatal(err)
	}
	_, c, _ := l.Category("doh")
	if c.Domains != 2 || c.Duplicates != 10 || c.Addresses != 1 {
		t.Errorf("doh = %+v, want 2 domains, 10 duplicates, 1 address", *c)
	}
	if k := l.Kept("doh"); len(k) != 2 {
		t.Errorf("kept = %v", k)
	}
	if a := l.Addresses("doh"); len(a) != 1 {
		t.Errorf("addresses = %v", a)
	}
	old := &Lists{Categories: []Category{{Name: "doh", Domains: 10}}}
	var se *ShrinkError
	if err := CheckShrink(old, l, 50); !errors.As(err, &se) {
		t.Errorf("15 lines of 2 distinct names after 10 names: %v, want a shrink", err)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
