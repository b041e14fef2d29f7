package dnsfilter

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestEveryGoogleDomainIsRewritten compares the safe-search table with
// the published lists in testdata, then asks the real server for every
// Google domain.
func TestEveryGoogleDomainIsRewritten(t *testing.T) {
	google := readList(t, "testdata/google_supported_domains.txt")
	if len(google) < 180 {
		t.Fatalf("%d Google domains in testdata: the list is truncated", len(google))
	}
	table := safeSearchTable("strict")
	var hosts []string
	for _, d := range google {
		d = strings.TrimPrefix(d, ".")
		for _, h := range []string{d, "www." + d} {
			hosts = append(hosts, h)
			if rw := table[h]; rw.target != "forcesafesearch.google.com." {
				t.Errorf("%s is not rewritten to forcesafesearch.google.com (%+v)", h, rw)
			}
		}
	}
	if n := len(googleDomains); n != len(google) {
		t.Errorf("googleDomains has %d entries, the published list %d: keep them equal", n, len(google))
	}
	for _, h := range readList(t, "testdata/youtube_restricted_hosts.txt") {
		if rw := table[h]; rw.target != "restrict.youtube.com." {
			t.Errorf("%s is not rewritten to restrict.youtube.com (%+v)", h, rw)
		}
	}
	for h, target := range map[string]string{
		"html.duckduckgo.com": "safe.duckduckgo.com.", "lite.duckduckgo.com": "safe.duckduckgo.com.",
		"cn.bing.com": "strict.bing.com.", "bing.com": "strict.bing.com.",
	} {
		if table[h].target != target {
			t.Errorf("%s -> %q, want %s", h, table[h].target, target)
		}
	}

	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	for _, h := range hosts {
		r := ts.query(t, "peda", h+".", dns.TypeA, false, true)
		if len(r.Answer) < 2 || !strings.Contains(r.Answer[0].String(), "CNAME\tforcesafesearch.google.com.") || !strings.Contains(r.Answer[1].String(), "216.239.38.120") {
			t.Errorf("%s: %v", h, r.Answer)
		}
	}
	for _, q := range ts.up.received() {
		if !strings.HasPrefix(q, "forcesafesearch.google.com.") {
			t.Errorf("%s reached the upstream: only the safe endpoint should", q)
		}
	}
}

func readList(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
