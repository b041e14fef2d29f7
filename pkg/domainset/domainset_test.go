package domainset

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func build(t testing.TB, entries map[string]int) *Set {
	t.Helper()
	b := NewBuilder(len(entries))
	for d, tag := range entries {
		b.Add(d, tag)
	}
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMatchCoversSubdomainsNotLookalikes(t *testing.T) {
	s := build(t, map[string]int{"example.com": 1, "bad.example.org": 2, "casino": 3})
	tests := []struct {
		name  string
		want  int // tag, -1 for no match
		entry string
	}{
		{"example.com", 1, "example.com"},
		{"www.example.com", 1, "example.com"},
		{"a.b.c.example.com", 1, "example.com"},
		{"xexample.com", -1, ""},
		{"example.com.evil.net", -1, ""},
		{"com", -1, ""},
		{"example.org", -1, ""},
		{"bad.example.org", 2, "bad.example.org"},
		{"x.bad.example.org", 2, "bad.example.org"},
		{"notbad.example.org", -1, ""},
		{"foo.casino", 3, "casino"},
	}
	for _, tt := range tests {
		tags, entry, ok := s.Match(tt.name)
		if got := tags.First(); got != tt.want || entry != tt.entry || ok != (tt.want >= 0) {
			t.Errorf("Match(%q) = tag %d entry %q ok %v, want tag %d entry %q", tt.name, got, entry, ok, tt.want, tt.entry)
		}
	}
}

func TestDomainInSeveralCategoriesCarriesAllTags(t *testing.T) {
	b := NewBuilder(0)
	b.Add("both.example", 3)
	b.Add("both.example", 70)
	b.Add("both.example", 3)
	b.Add("one.example", 70)
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2 distinct domains", s.Len())
	}
	tags, ok := s.Lookup("both.example")
	if !ok || !tags.Has(3) || !tags.Has(70) || tags.Has(4) {
		t.Errorf("both.example tags = %v", tags)
	}
	if tags, _ := s.Lookup("one.example"); tags.First() != 70 {
		t.Errorf("one.example first tag = %d", tags.First())
	}
}

func TestEmptyAndNilSetsMatchNothing(t *testing.T) {
	var nilSet *Set
	if _, _, ok := nilSet.Match("a.b"); ok {
		t.Error("nil set matched")
	}
	s := build(t, nil)
	if _, _, ok := s.Match("a.b"); ok || s.Len() != 0 {
		t.Error("empty set matched")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"Example.COM.", "example.com", ""},
		{"  www.example.com  ", "www.example.com", ""},
		{"_dmarc.example.com", "_dmarc.example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"ÉCOLE.fr", "xn--cole-9oa.fr", ""},
		{"", "", "empty name"},
		{".", "", "empty name"},
		{"a..b", "", "empty label"},
		{"exa mple.com", "", "not allowed"},
		{"*.example.com", "", "not allowed"},
		{"example.com/path", "", "not allowed"},
		{strconv.Itoa(1) + string(make([]byte, 70)), "", "not allowed"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if tt.err != "" {
			if err == nil || !contains(err.Error(), tt.err) {
				t.Errorf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// Synthetic returns the i-th name of a deterministic synthetic list shaped
// like UT1's adult category (two or three labels, common TLDs).
func synthetic(i int) string {
	tlds := [...]string{"com", "net", "org", "fr", "xxx", "info", "ru", "de"}
	if i%5 == 0 {
		return "www" + strconv.Itoa(i%97) + ".s" + strconv.FormatUint(uint64(i)*2654435761, 36) + "." + tlds[i%len(tlds)]
	}
	return "s" + strconv.FormatUint(uint64(i)*2654435761, 36) + "x." + tlds[i%len(tlds)]
}

func TestSyntheticMillionsAreCompact(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 5-million-domain set")
	}
	const n = 5_000_000
	b := NewBuilder(n)
	for i := range n {
		b.Add(synthetic(i), i%3)
	}
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	if per := float64(s.Bytes()) / n; per > 16 {
		t.Errorf("%.1f bytes per domain, target at most 16", per)
	}
	for _, i := range []int{0, 1, 12345, n - 1} {
		if tags, _, ok := s.Match("sub." + synthetic(i)); !ok || !tags.Has(i%3) {
			t.Errorf("sub.%s not matched", synthetic(i))
		}
	}
	if _, _, ok := s.Match("not-listed.example"); ok {
		t.Error("unlisted name matched")
	}
}

// BenchmarkBuild5M measures building the matcher for a synthetic
// 5-million-domain list (the size of UT1's adult category) from names in
// memory; ut1's BenchmarkLoad5M includes reading and parsing the file.
func BenchmarkBuild5M(b *testing.B) {
	const n = 5_000_000
	names := make([]string, n)
	for i := range names {
		names[i] = synthetic(i)
	}
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		bl := NewBuilder(n)
		for _, d := range names {
			bl.Add(d, 0)
		}
		s, err := bl.Build()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.Bytes())/n, "bytes/domain")
		b.ReportMetric(time.Since(start).Seconds(), "s/build")
	}
	runtime.KeepAlive(names)
}

func BenchmarkMatch(b *testing.B) {
	const n = 1_000_000
	bl := NewBuilder(n)
	for i := range n {
		bl.Add(synthetic(i), 0)
	}
	s, _ := bl.Build()
	queries := make([]string, 1024)
	for i := range queries {
		if i%2 == 0 {
			queries[i] = "www." + synthetic(i*7)
		} else {
			queries[i] = fmt.Sprintf("host%d.allowed.example.org", i)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		s.Match(queries[i%len(queries)])
	}
}
