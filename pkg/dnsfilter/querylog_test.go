package dnsfilter

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestQueryLogDirectoryChangeKeepsRetention: changing
// dns.privacy.directory used to orphan the old directory's files, which
// nothing deleted any more. They now move to the new directory, where the
// retention deletes them in time; files that are not the log's stay
// (issue 12).
func TestQueryLogDirectoryChangeKeepsRetention(t *testing.T) {
	root := t.TempDir()
	oldDir, newDir := filepath.Join(root, "old"), filepath.Join(root, "new")
	q := newQueryLog(slog.New(slog.DiscardHandler), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	plan := PrivacyPlan{LogBlocked: true, Retention: 24 * time.Hour, Dir: oldDir}
	q.configure(plan)
	day1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	client := netip.MustParseAddr("10.10.0.57")
	for _, at := range []time.Time{day1, day1.Add(time.Hour), day1.Add(20 * time.Hour)} {
		q.record(at, "peda", client, "example.com", "A", "adult")
		if err := q.write(<-q.ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(oldDir, "notes.txt"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}

	plan.Dir = newDir
	q.configure(plan)
	if left, _ := filepath.Glob(filepath.Join(oldDir, "blocked-*.jsonl")); len(left) != 0 {
		t.Errorf("log files left in the old directory: %v", left)
	}
	if _, err := os.Stat(filepath.Join(oldDir, "notes.txt")); err != nil {
		t.Errorf("a file that is not the log's was touched: %v", err)
	}
	moved, _ := filepath.Glob(filepath.Join(newDir, "blocked-*.jsonl"))
	if len(moved) != 3 {
		t.Fatalf("%d files in the new directory, want 3", len(moved))
	}
	if st, err := os.Stat(newDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("new directory: %v, %v", st, err)
	}
	// The retention applies to them where they are now.
	q.prune(day1.Add(27 * time.Hour))
	if left, _ := filepath.Glob(filepath.Join(newDir, "blocked-*.jsonl")); len(left) != 1 || filepath.Base(left[0]) != logFileName(day1.Add(20*time.Hour)) {
		t.Errorf("after the retention of the first two hours: %v", left)
	}
	// New entries go to the new directory.
	q.record(day1.Add(25*time.Hour), "peda", client, "example.com", "A", "adult")
	if err := q.write(<-q.ch); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(newDir, logFileName(day1.Add(25*time.Hour)))); err != nil {
		t.Error(err)
	}
	// An emptied old directory is removed; turning the log off with a
	// new directory deletes everything (prune with the log off).
	os.Remove(filepath.Join(oldDir, "notes.txt"))
	q.configure(PrivacyPlan{LogBlocked: false, Retention: 24 * time.Hour, Dir: oldDir})
	q.prune(day1.Add(25 * time.Hour))
	for _, d := range []string{oldDir, newDir} {
		if left, _ := filepath.Glob(filepath.Join(d, "blocked-*.jsonl")); len(left) != 0 {
			t.Errorf("log off: files left in %s: %v", d, left)
		}
	}
	if _, err := os.Stat(newDir); !os.IsNotExist(err) {
		t.Errorf("emptied directory %s kept: %v", newDir, err)
	}
}
