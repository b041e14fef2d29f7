package dnsfilter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type recordedBlocker struct {
	mu    sync.Mutex
	addrs []netip.Addr
	calls int
}

func (b *recordedBlocker) count() int { b.mu.Lock(); defer b.mu.Unlock(); return b.calls }

func (b *recordedBlocker) SetBlocked(_ context.Context, addrs []netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs, b.calls = append([]netip.Addr(nil), addrs...), b.calls+1
	return nil
}

// archive builds a UT1 tar.gz whose gambling category has n domains.
func archive(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	var gambling strings.Builder
	gambling.WriteString("casino.example\n")
	for i := range n {
		fmt.Fprintf(&gambling, "bet%d.example\n", i)
	}
	for name, body := range map[string]string{
		"blacklists/gambling/domains": gambling.String(), "blacklists/gambling/usage": "black\n",
		"blacklists/adult/domains": "example.com\n", "blacklists/adult/usage": "black\n",
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestListsFetchedFromSourceAndBadUpdatesRefused(t *testing.T) {
	var mu sync.Mutex
	current := archive(t, 100)
	sum := ""
	mirror := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/ut1/blacklists.tar.gz":
			w.Write(current)
		case "/ut1/blacklists.tar.gz.sha256":
			s := sum
			if s == "" {
				h := sha256.Sum256(current)
				s = hex.EncodeToString(h[:])
			}
			fmt.Fprintln(w, s)
		}
	}))
	defer mirror.Close()
	dir := t.TempDir()
	ts := startServerOpts(t, dir, func(y string) string {
		return strings.Replace(y, "lists: {directory: "+dir+"}", "lists: {directory: "+dir+", source: "+mirror.URL+"/ut1/blacklists.tar.gz}", 1)
	}, func(o *Options) { o.HTTPClient = mirror.Client() })
	// No lists stored: the filter fetches them at once.
	ts.waitLists(t)
	if r := ts.query(t, "peda", "bet7.example.", dns.TypeA, false, true); r.Rcode != dns.RcodeNameError {
		t.Fatalf("fetched lists not applied: %s", dns.RcodeToString[r.Rcode])
	}
	v1 := ts.f.Lists().Version

	// A mirror that lost most of gambling: refused, reported, old lists kept.
	mu.Lock()
	current = archive(t, 10)
	mu.Unlock()
	if ts.f.update(context.Background(), ts.f.currentPlan()) {
		t.Fatal("shrunk update installed")
	}
	if w := ts.warning("dns-lists-update"); !strings.Contains(w, "gambling 101 -> 11") {
		t.Errorf("shrink not reported: %q", w)
	}
	// A corrupted download: refused.
	mu.Lock()
	current, sum = archive(t, 120), strings.Repeat("ab", 32)
	mu.Unlock()
	if ts.f.update(context.Background(), ts.f.currentPlan()) {
		t.Fatal("update with a bad checksum installed")
	}
	if w := ts.warning("dns-lists-update"); !strings.Contains(w, "checksum mismatch") {
		t.Errorf("checksum failure not reported: %q", w)
	}
	if ts.f.Lists().Version != v1 {
		t.Error("lists in use changed after refused updates")
	}
	// A good one is installed and swapped in.
	mu.Lock()
	sum = ""
	mu.Unlock()
	if !ts.f.update(context.Background(), ts.f.currentPlan()) {
		t.Fatal("good update not installed")
	}
	if ts.warning("dns-lists-update") != "" {
		t.Error("warning not cleared after a good update")
	}
	if r := ts.query(t, "peda", "bet119.example.", dns.TypeA, false, true); r.Rcode != dns.RcodeNameError {
		t.Errorf("new version not in use: %s", dns.RcodeToString[r.Rcode])
	}
	// A plan naming the mirror over plain http (config validation refuses
	// it; the store refuses it again): refused, lists kept.
	v2 := ts.f.Lists().Version
	mu.Lock()
	current = archive(t, 130)
	mu.Unlock()
	insecure := *ts.f.currentPlan()
	insecure.Lists.Source = strings.Replace(insecure.Lists.Source, "https://", "http://", 1)
	if ts.f.update(context.Background(), &insecure) {
		t.Fatal("update over http installed")
	}
	if w := ts.warning("dns-lists-update"); !strings.Contains(w, "https") || ts.f.Lists().Version != v2 {
		t.Errorf("http source: warning %q, lists %s (want %s kept)", w, ts.f.Lists().Version, v2)
	}
}

func TestDoHAddressesHandedToFirewall(t *testing.T) {
	blocker := &recordedBlocker{}
	ts := startServerOpts(t, testLists(t, t.TempDir(), map[string]string{
		// The upstream's own address must never be blocked.
		"doh/domains": "doh.example\n192.0.2.53\n127.0.0.1\n",
	}), nil, func(o *Options) { o.Blocker = blocker })
	ts.waitLists(t)
	// The filter resolves them after loading the lists.
	deadline := time.Now().Add(5 * time.Second)
	for blocker.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.53")}
	blocker.mu.Lock()
	defer blocker.mu.Unlock()
	if !slices.Equal(blocker.addrs, want) {
		t.Errorf("blocked addresses = %v, want %v (doh.example resolved, the list's address, not the upstream)", blocker.addrs, want)
	}
}
