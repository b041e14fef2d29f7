package eventlog

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandlerKeepsEventsNotQueries(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&console, nil), r))
	log.Info("configuration applied", "event", "config-applied", "source", "start")
	log.Info("component applied", "component", "dns")
	log.With("component", "uplinks").Warn("renater offline")
	log.With("part", "querylog").Warn("blocked", "client", "10.10.0.5", "name", "x.test", "event", "dns-blocked")
	log.Debug("detail", "event", "debug-only")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rec := range recs {
		got = append(got, rec.Str("msg"))
	}
	if want := "configuration applied|renater offline"; strings.Join(got, "|") != want {
		t.Errorf("kept %q, want %q", strings.Join(got, "|"), want)
	}
	if recs[1].Str("component") != "uplinks" {
		t.Errorf("With attributes lost: %v", recs[1])
	}
	if !strings.Contains(console.String(), "component applied") || !strings.Contains(console.String(), "10.10.0.5") {
		t.Errorf("the console must still get every record:\n%s", console.String())
	}
}

func TestRingIsCappedAndKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	const max = 64 << 10
	r, err := Open(dir, Options{MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		fmt.Fprintf(r, `{"msg":"event %d","event":"x"}`+"\n", i)
	}
	r.Close()
	total := int64(0)
	for _, n := range []string{currentName, previousName} {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	if total > max {
		t.Errorf("log is %d bytes, cap %d", total, max)
	}
	recs, _ := Read(dir)
	if len(recs) < 500 || recs[len(recs)-1].Str("msg") != "event 4999" {
		t.Errorf("%d records, last %v", len(recs), recs[len(recs)-1])
	}
	t.Logf("%d bytes hold the last %d of 5000 records", total, len(recs))
}

// A crash mid-write leaves a torn last line: reopening cuts it, reading
// skips damaged lines, and later records follow whole.
func TestTornTailAfterCrash(t *testing.T) {
	dir := t.TempDir()
	r, _ := Open(dir, Options{})
	r.Write([]byte(`{"msg":"one","event":"a"}`))
	r.Write([]byte(`{"msg":"two","event":"a"}`))
	r.Close()
	f, _ := os.OpenFile(filepath.Join(dir, currentName), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte(`{"msg":"tor`))
	f.Close()
	if recs, _ := Read(dir); len(recs) != 2 {
		t.Errorf("read %d records over a torn tail, want 2", len(recs))
	}
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte(`{"msg":"three","event":"a"}`))
	r.Close()
	recs, _ := Read(dir)
	var got []string
	for _, rec := range recs {
		got = append(got, rec.Str("msg"))
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Errorf("after reopen: %v", got)
	}
}

// The log survives a restart: a new Ring on the same directory appends.
func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		r, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		slog.New(NewHandler(slog.DiscardHandler, r)).Info("running", "event", "daemon-running", "run", i)
		r.Close()
	}
	recs, _ := Read(dir)
	if len(recs) != 3 || recs[2].Str("run") != "2" {
		t.Errorf("records after 3 runs: %v", recs)
	}
}

func TestReadMissingIsEmpty(t *testing.T) {
	recs, err := Read(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(recs) != 0 {
		t.Errorf("Read of a missing log: %v, %v", recs, err)
	}
}

func TestRecordAttrsSortedWithoutTimeLevelMessage(t *testing.T) {
	for _, c := range []struct {
		name string
		rec  Record
		want string
	}{
		{"only the header", Record{"time": "2026-12-05T10:00:00Z", "level": "INFO", "msg": "hello"}, ""},
		{"sorted by key", Record{"msg": "m", "zone": "peda", "event": "status-serving", "at": "10.20.0.1:443"},
			"at=10.20.0.1:443 event=status-serving zone=peda"},
		{"values other than text as JSON", Record{"took": float64(1500), "ok": true, "addrs": []any{"a", "b"}},
			`addrs=["a","b"] ok=true took=1500`},
	} {
		if got := c.rec.Attrs(); got != c.want {
			t.Errorf("%s: Attrs() = %q, want %q", c.name, got, c.want)
		}
	}
}
