package dnsfilter

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/config"
)

func TestCompileAddsBypassCategoriesForMinors(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(strings.ReplaceAll(strings.ReplaceAll(testConfig, "UPSTREAM", "192.0.2.53:53"), "LISTS", "/perm/lists/ut1")))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.profile("eleves").Categories, ","); got != "adult,gambling,liste_bu,doh,vpn" {
		t.Errorf("eleves categories = %s", got)
	}
	if got := strings.Join(p.profile("personnels").Categories, ","); got != "gambling" {
		t.Errorf("personnels (not minors) categories = %s", got)
	}
	s := p.String()
	for _, want := range []string{
		"listen peda 10.10.0.1:53 udp+tcp profile eleves\n",
		"profile invites: categories adult,doh,vpn; allow -; deny -; safe_search strict; block blockpage; minors true; fail_closed true\n",
		"upstream 192.0.2.53:53\n",
		"privacy: aggregate counters only\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
}

func TestRefreshScheduledInsideWindow(t *testing.T) {
	w := config.Window{Start: 2 * 60, End: 5 * 60}
	seen := map[int]bool{}
	for _, host := range []string{"passerelle-0599999z", "passerelle-0591234a", "passerelle-0751234a", "x"} {
		m := refreshMinute(w, host)
		if m < 120 || m >= 300 {
			t.Errorf("%s: refresh at minute %d, outside 02:00-05:00", host, m)
		}
		seen[m] = true
	}
	if len(seen) < 2 {
		t.Error("every box refreshes at the same minute")
	}
	if m := refreshMinute(config.Window{Start: 23 * 60, End: 60}, "h"); m >= 60 && m < 23*60 {
		t.Errorf("window across midnight: minute %d", m)
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	if got := nextRefresh(now, 150); !got.Equal(time.Date(2026, 11, 29, 2, 30, 0, 0, time.UTC)) {
		t.Errorf("nextRefresh after the window = %v", got)
	}
	if got := nextRefresh(now.Add(-9*time.Hour), 150); !got.Equal(time.Date(2026, 11, 28, 2, 30, 0, 0, time.UTC)) {
		t.Errorf("nextRefresh before the window = %v", got)
	}
}

func TestQueryLogHashesClientsAndEnforcesRetention(t *testing.T) {
	dir := t.TempDir()
	q := newQueryLog(slog.New(slog.DiscardHandler), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	q.configure(PrivacyPlan{LogBlocked: true, Retention: 24 * time.Hour, Dir: dir})
	day1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	client := netip.MustParseAddr("10.10.0.57")
	h1 := q.hashLocked(day1, client)
	if h1 != q.hashLocked(day1.Add(time.Hour), client) {
		t.Error("same client, same day: hashes differ")
	}
	if h1 == q.hashLocked(day1, netip.MustParseAddr("10.10.0.58")) {
		t.Error("two clients share a hash")
	}
	if h1 == q.hashLocked(day1.Add(24*time.Hour), client) {
		t.Error("the key did not rotate with the day")
	}
	q.record(day1, "peda", client, "example.com", "A", "adult")
	e := <-q.ch
	if err := q.write(e); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, logFileName(day1)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "10.10.0.57") || !strings.Contains(string(b), `"reason":"adult"`) {
		t.Errorf("log line: %s", b)
	}
	q.prune(day1.Add(24 * time.Hour)) // newest entry 23 h old: kept
	if _, err := os.Stat(filepath.Join(dir, logFileName(day1))); err != nil {
		t.Errorf("file deleted before the retention: %v", err)
	}
	q.prune(day1.Add(25*time.Hour + time.Second))
	if _, err := os.Stat(filepath.Join(dir, logFileName(day1))); !os.IsNotExist(err) {
		t.Errorf("file kept past the retention: %v", err)
	}
	q.configure(PrivacyPlan{LogBlocked: false, Dir: dir})
	q.record(day1, "peda", client, "example.com", "A", "adult")
	if len(q.ch) != 0 {
		t.Error("entry queued with the log off")
	}
}
