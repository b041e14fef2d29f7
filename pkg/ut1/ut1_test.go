package ut1

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"
	"time"

	"passerelle/pkg/domainset"
)

// snapshot is the shared UT1 snapshot, relative to this package.
const snapshot = "../../../shared/data/ut1"

func needSnapshot(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(snapshot, "SOURCE.md")); err != nil {
		t.Skipf("UT1 snapshot not found at %s (it lies beside the repository as shared/data/ut1): %v", snapshot, err)
	}
}

type tarEntry struct {
	name, body, link string
}

func makeTarGz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Linkname: e.link, Typeflag: tar.TypeSymlink, Mode: 0o777}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.link == "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleArchive(t testing.TB, adult int) []byte {
	var domains bytes.Buffer
	domains.WriteString("# comment\n\nExample-Adult.COM.\nbücher-x.example\nnot a domain\n1.2.3.4\n")
	for i := range adult {
		fmt.Fprintf(&domains, "site%d.example\n", i)
	}
	return makeTarGz(t, []tarEntry{
		{name: "blacklists/adult/domains", body: domains.String()},
		{name: "blacklists/adult/urls", body: "a.example/x\nb.example/y\n"},
		{name: "blacklists/adult/expressions", body: "(sex|porn)\n"},
		{name: "blacklists/adult/usage", body: "black\nadult\n"},
		{name: "blacklists/porn", link: "adult"},
		{name: "blacklists/liste_bu/usage", body: "# library\nwhite\n"},
		{name: "blacklists/liste_bu/domains", body: "univ.example\n"},
		{name: "blacklists/doh/domains", body: "dns.example\n9.9.9.9\n2620:fe::fe\n"},
		{name: "blacklists/global_usage", body: "NAME: adult\n"},
	})
}

func TestReadTarGzCategoriesAliasesAndUnenforceableEntries(t *testing.T) {
	l, err := ReadTarGz(bytes.NewReader(sampleArchive(t, 3)), "v1", Options{Keep: []string{"doh"}})
	if err != nil {
		t.Fatal(err)
	}
	tag, adult, ok := l.Category("porn")
	if !ok || adult.Name != "adult" {
		t.Fatalf("alias porn -> adult not resolved: %+v", adult)
	}
	if adult.Domains != 5 || adult.Invalid != 1 || adult.Addresses != 1 || adult.URLs != 2 || adult.Expressions != 1 || adult.White {
		t.Errorf("adult = %+v, want 5 domains, 1 invalid, 1 address, 2 urls, 1 expression, black", *adult)
	}
	if !slices.Equal(adult.Aliases, []string{"porn"}) {
		t.Errorf("aliases = %v", adult.Aliases)
	}
	for _, name := range []string{"example-adult.com", "www.example-adult.com", mustNormalize(t, "bücher-x.example"), "site2.example"} {
		if tags, _, ok := l.Set.Match(name); !ok || !tags.Has(tag) {
			t.Errorf("%s not in adult", name)
		}
	}
	if _, bu, _ := l.Category("liste_bu"); !bu.White {
		t.Error("liste_bu should be white")
	}
	if got := l.Kept("doh"); !slices.Equal(got, []string{"dns.example"}) {
		t.Errorf("kept doh names = %v", got)
	}
	want := []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2620:fe::fe")}
	if got := l.Addresses("doh"); !slices.Equal(got, want) {
		t.Errorf("doh addresses = %v", got)
	}
}

func TestReadDirSnapshot(t *testing.T) {
	needSnapshot(t)
	start := time.Now()
	l, err := ReadDir(snapshot, Options{Keep: []string{"doh"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %d categories, %d domains, %d distinct, loaded in %v", len(l.Categories), l.Domains(), l.Set.Len(), time.Since(start))
	if l.Domains() < 550_000 {
		t.Errorf("only %d domains loaded from the snapshot", l.Domains())
	}
	_, porn, ok := l.Category("porn")
	if !ok || porn.Name != "adult" || porn.URLs == 0 {
		t.Errorf("porn should alias adult, whose urls are counted: %+v", porn)
	}
	if _, bu, ok := l.Category("liste_bu"); !ok || !bu.White {
		t.Errorf("liste_bu should be a white category: %+v", bu)
	}
	if _, g, ok := l.Category("gambling"); !ok || g.White || g.Domains < 10_000 {
		t.Errorf("gambling: %+v", g)
	}
	if len(l.Kept("doh")) < 100 || len(l.Addresses("doh")) == 0 {
		t.Errorf("doh: %d names, %d addresses kept", len(l.Kept("doh")), len(l.Addresses("doh")))
	}
	// The copy reset the files' times; its SOURCE.md says the snapshot's.
	if want := time.Date(2026, 8, 17, 0, 0, 0, 0, time.UTC); !l.Published.Equal(want) {
		t.Errorf("published %v, want %v (SOURCE.md)", l.Published, want)
	}
}

// TestPublishedDate: the publication date is the newest list file's
// time, in an archive and in a tree, unless SOURCE.md states one.
func TestPublishedDate(t *testing.T) {
	older, newer := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		mod  time.Time
	}{{"blacklists/adult/domains", older}, {"blacklists/gambling/domains", newer}, {"blacklists/README", newer.Add(time.Hour)}} {
		body := "a.example\n"
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: e.mod})
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	l, err := ReadTarGz(&buf, "v", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Published.Equal(newer) {
		t.Errorf("archive published %v, want %v (the newest list file; README is not a list)", l.Published, newer)
	}

	dir := t.TempDir()
	for cat, mod := range map[string]time.Time{"adult": older, "gambling": newer} {
		os.MkdirAll(filepath.Join(dir, cat), 0o755)
		f := filepath.Join(dir, cat, "domains")
		os.WriteFile(f, []byte("a.example\n"), 0o644)
		os.Chtimes(f, mod, mod)
	}
	if l, err := ReadDir(dir, Options{}); err != nil || !l.Published.Equal(newer) {
		t.Errorf("tree published %v (%v), want %v", l.Published, err, newer)
	}
	os.WriteFile(filepath.Join(dir, "SOURCE.md"), []byte("Snapshot: the public daily mirror, commit dated 2026-08-17.\n"), 0o644)
	if l, err := ReadDir(dir, Options{}); err != nil || !l.Published.Equal(time.Date(2026, 8, 17, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("tree with SOURCE.md published %v (%v)", l.Published, err)
	}
}

func mustNormalize(t testing.TB, s string) string {
	t.Helper()
	n, err := domainset.Normalize(s)
	if err != nil || n == s {
		t.Fatalf("Normalize(%q) = %q, %v", s, n, err)
	}
	return n
}

// fakeMirror serves an archive and its checksum file, like the academy's
// mirror.
type fakeMirror struct {
	archive []byte
	sum     string // published checksum; "" = the archive's
}

func (m *fakeMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/blacklists.tar.gz":
		w.Write(m.archive)
	case "/blacklists.tar.gz.sha256":
		sum := m.sum
		if sum == "" {
			h := sha256.Sum256(m.archive)
			sum = hex.EncodeToString(h[:])
		}
		fmt.Fprintf(w, "%s  blacklists.tar.gz\n", sum)
	default:
		http.NotFound(w, r)
	}
}

func TestStoreUpdateChecksAndKeepsLastGood(t *testing.T) {
	mirror := &fakeMirror{archive: sampleArchive(t, 100)}
	srv := httptest.NewTLSServer(mirror)
	defer srv.Close()
	source := srv.URL + "/blacklists.tar.gz"
	dir := t.TempDir()
	s := &Store{Dir: dir, MaxShrink: 50, Client: srv.Client()}
	ctx := context.Background()

	if _, err := s.Load(Options{}); !errors.Is(err, ErrNoLists) {
		t.Fatalf("empty store: err = %v, want ErrNoLists", err)
	}
	v1, err := s.Update(ctx, source, nil, Options{})
	if err != nil {
		t.Fatalf("first update: %v", err)
	}
	if _, err := s.Update(ctx, source, v1, Options{}); !errors.Is(err, ErrUnchanged) {
		t.Errorf("same version: err = %v, want ErrUnchanged", err)
	}

	// A corrupted transfer: the archive does not match the published sum.
	mirror.archive = sampleArchive(t, 101)
	mirror.sum = "00" + v1.Version[2:]
	var ce *ChecksumError
	if _, err := s.Update(ctx, source, v1, Options{}); !errors.As(err, &ce) {
		t.Errorf("bad checksum: err = %v, want ChecksumError", err)
	}
	// A mirror that lost most of a category.
	mirror.archive, mirror.sum = sampleArchive(t, 10), ""
	var se *ShrinkError
	if _, err := s.Update(ctx, source, v1, Options{}); !errors.As(err, &se) || se.Shrunk[0].Category != "adult" {
		t.Errorf("shrunk list: err = %v, want ShrinkError on adult", err)
	}
	// A good update becomes current; v1 is kept as previous.
	mirror.archive = sampleArchive(t, 120)
	v2, err := s.Update(ctx, source, v1, Options{})
	if err != nil {
		t.Fatalf("second update: %v", err)
	}
	m, err := s.ReadManifest()
	if err != nil || m.Current.SHA256 != v2.Version || m.Previous.SHA256 != v1.Version {
		t.Fatalf("manifest = %+v, %v", m, err)
	}
	if got := s.StoredVersions(); len(got) != 2 {
		t.Errorf("stored versions = %v, want current and previous", got)
	}
	if l, err := s.Load(Options{}); err != nil || l.Version != v2.Version {
		t.Fatalf("boot load: %v, %v", l, err)
	}
	// Damage the current archive: boot falls back to the previous one.
	if err := os.WriteFile(filepath.Join(dir, m.Current.File), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := s.Load(Options{})
	if err != nil || l.Version != v1.Version {
		t.Fatalf("load with damaged current: %v, %v; want the previous version", l, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".download-*")); len(leftovers) > 0 {
		t.Errorf("temporary downloads left behind: %v", leftovers)
	}
}

func TestCheckShrinkCountsDisappearedCategories(t *testing.T) {
	old := &Lists{Categories: []Category{{Name: "adult", Domains: 100}, {Name: "vpn", Domains: 10}, {Name: "empty"}}}
	cand := &Lists{Categories: []Category{{Name: "adult", Domains: 60}}, byName: map[string]int{"adult": 0}}
	err := CheckShrink(old, cand, 50)
	var se *ShrinkError
	if !errors.As(err, &se) || len(se.Shrunk) != 1 || se.Shrunk[0] != (Shrink{"vpn", 10, 0}) {
		t.Errorf("CheckShrink = %v", err)
	}
}

// synthetic returns the i-th name of a deterministic list shaped like
// UT1's adult category.
func synthetic(i int) string {
	tlds := [...]string{"com", "net", "org", "fr", "xxx", "info", "ru", "de"}
	return "s" + strconv.FormatUint(uint64(i)*2654435761, 36) + "x." + tlds[i%len(tlds)]
}

// WriteSynthetic writes a UT1 tree with an adult category of n synthetic
// domains.
func writeSynthetic(t testing.TB, dir string, n int) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "adult"), 0o755)
	os.WriteFile(filepath.Join(dir, "adult", "usage"), []byte("black\n"), 0o644)
	f, err := os.Create(filepath.Join(dir, "adult", "domains"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		w.WriteString(synthetic(i))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// BenchmarkLoad5M loads a synthetic 5-million-domain category (the size
// of UT1's adult list) from a directory tree: read, normalise, build.
// Target: under 2 s and at most 16 bytes per domain.
func BenchmarkLoad5M(b *testing.B) {
	const n = 5_000_000
	dir := b.TempDir()
	writeSynthetic(b, dir, n)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		l, err := ReadDir(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		if l.Set.Len() != n {
			b.Fatalf("%d domains loaded", l.Set.Len())
		}
		runtime.GC()
		debug.FreeOSMemory()
		b.ReportMetric(took.Seconds(), "s/load")
		b.ReportMetric(float64(l.Set.Bytes())/n, "bytes/domain")
	}
}
