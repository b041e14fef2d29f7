package slots

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

func TestEnvRoundTripAndValidation(t *testing.T) {
	b := InitialEnv()
	if len(b) != EnvSize || !bytes.HasPrefix(b, []byte("# GRUB Environment Block\nboot_slot=a\ntry_slot=\n#")) {
		t.Fatalf("initial block: %q", b[:60])
	}
	e, err := ParseEnv(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Get(KeyBootSlot) != "a" || e.Get(KeyTrySlot) != "" {
		t.Errorf("parsed %v", e.vals)
	}
	if err := e.Set(KeyTrySlot, "b"); err != nil {
		t.Fatal(err)
	}
	out, _ := e.Render()
	if !bytes.HasPrefix(out, []byte("# GRUB Environment Block\nboot_slot=a\ntry_slot=b\n#")) || len(out) != EnvSize {
		t.Errorf("rendered %q", out[:60])
	}
	pad := func(s string) []byte { return append([]byte(s), bytes.Repeat([]byte{'#'}, EnvSize-len(s))...) }
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short block", []byte("# GRUB Environment Block\n"), "want exactly 1024"},
		{"no header", pad("boot_slot=a\n"), "header"},
		{"not key=value", pad("# GRUB Environment Block\nboot_slot\n"), "not key=value"},
		{"data after padding", append(pad("# GRUB Environment Block\n")[:1000], []byte(strings.Repeat("x", 24))...), "after the '#' padding"},
		{"escaped value", pad("# GRUB Environment Block\nk=a\\\\b\n"), "backslash"},
		{"bad name", pad("# GRUB Environment Block\nbo ot=a\n"), "variable name"},
		{"unterminated line", append([]byte("# GRUB Environment Block\nk="), bytes.Repeat([]byte{'x'}, EnvSize-27)...), "not ended by a newline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEnv(c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
	big := NewEnv()
	big.Set("k", strings.Repeat("x", EnvSize))
	if _, err := big.Render(); err == nil {
		t.Error("a block over 1024 bytes was rendered")
	}
}

func TestParseCmdline(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Booted
		err  string
	}{
		{"console=ttyAMA0 passerelle.slot=b passerelle.trying=1 quiet -- run", Booted{B, true}, ""},
		{"passerelle.slot=a passerelle.trying=0 -- run --x passerelle.slot=b", Booted{A, false}, ""},
		{"console=ttyAMA0 -- run passerelle.slot=b", Booted{}, "did not boot from an A/B slot"},
		{"passerelle.slot=c", Booted{}, "want a or b"},
		{"passerelle.slot=a passerelle.trying=yes", Booted{}, "want 0 or 1"},
	} {
		got, err := ParseCmdline(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
	if _, err := ParseCmdline("quiet"); !errors.Is(err, ErrNotAB) {
		t.Errorf("no slot: %v, want ErrNotAB", err)
	}
}

func TestSettleDecidesWhatAnEarlierTrialBecame(t *testing.T) {
	now := time.Unix(1000, 0)
	env := func(boot, try string) Env {
		e := NewEnv()
		e.Set(KeyBootSlot, boot)
		e.Set(KeyTrySlot, try)
		return e
	}
	booted := Trial{Slot: B, From: A, Version: "v2", BootedAt: now.Add(-time.Minute)}
	for _, c := range []struct {
		name         string
		b            Booted
		env          Env
		t            Trial
		ok           bool
		outcome, why string
	}{
		{"back on the good slot after a crash or hang", Booted{A, false}, env(A, ""), booted, true, OutcomeAbandoned, ReasonRestart},
		{"never reached /perm", Booted{A, false}, env(A, ""), Trial{Slot: B, From: A}, true, OutcomeAbandoned, ReasonNoStart},
		{"committed but the record was lost", Booted{B, false}, env(B, ""), booted, true, OutcomeCommitted, ""},
		{"not tried yet", Booted{A, false}, env(A, B), Trial{Slot: B, From: A}, false, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, ok := settle(c.b, c.env, c.t, now)
			if ok != c.ok || r.Outcome != c.outcome || r.Reason != c.why {
				t.Errorf("got %+v %v, want %s/%s %v", r, ok, c.outcome, c.why, c.ok)
			}
		})
	}
	r, _ := settle(Booted{A, false}, env(A, ""), booted, now)
	if got, want := r.Message(), "update to slot B (version v2) abandoned: it restarted before its health gate passed (crash or hang)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// memSystem is the box's side in memory: the partitions and the ESP need
// root and a disk; the qemu test (integration/qemu_test.go) runs the
// Linux one.
type memSystem struct {
	cmdline string
	env     []byte
	writes  int
	failEnv bool
}

func (m *memSystem) Cmdline() (string, error) { return m.cmdline, nil }
func (m *memSystem) Partition(name string) (string, int64, error) {
	switch name {
	case "system-a":
		return "/dev/vda2", 96 << 20, nil
	case "system-b":
		return "/dev/vda3", 96 << 20, nil
	}
	return "", 0, fmt.Errorf("no partition named %q", name)
}
func (m *memSystem) ReadEnv() ([]byte, error) { return append([]byte(nil), m.env...), nil }
func (m *memSystem) WriteEnv(b []byte) error {
	if m.failEnv {
		return errors.New("read-only")
	}
	m.writes++
	m.env = append([]byte(nil), b...)
	return nil
}

// bootOnce runs what GRUB's grub.cfg does, then a new Slots as PID 1 would.
func bootOnce(t *testing.T, sys *memSystem, dir, version string) (*Slots, *health.Registry, bool) {
	t.Helper()
	e, err := ParseEnv(sys.env)
	if err != nil {
		t.Fatal(err)
	}
	slot, trying := e.Get(KeyBootSlot), 0
	if ts := e.Get(KeyTrySlot); ts != "" {
		slot, trying = ts, 1
		e.Set(KeyTrySlot, "")
		sys.env, _ = e.Render()
	}
	sys.cmdline = fmt.Sprintf("console=ttyAMA0 passerelle.slot=%s passerelle.trying=%d -- run", slot, trying)
	h := health.New(time.Now)
	s, err := New(box.Deps{Health: h}, Options{Dir: dir, Version: version, Sys: sys})
	if err != nil {
		t.Fatal(err)
	}
	return s, h, s.Start()
}

func TestUpdateCommittedThenOneThatCrashesIsAbandoned(t *testing.T) {
	dir := t.TempDir()
	sys := &memSystem{env: InitialEnv()}
	s, _, trial := bootOnce(t, sys, dir, "v1")
	if trial {
		t.Fatal("a new image's first boot is a trial")
	}
	if err := s.TryOnce(A); err == nil {
		t.Error("the running slot was accepted as a target")
	}
	slot, dev, size, err := s.Inactive()
	if err != nil || slot != B || dev != "/dev/vda3" || size != 96<<20 {
		t.Fatalf("inactive: %s %s %d %v", slot, dev, size, err)
	}
	s.health.Raise("dns", "dns-lists", health.Critical, "no lists")
	if err := s.TryOnce(B); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.TrySlot != B || st.Pending == nil || st.Pending.Slot != B {
		t.Errorf("status after TryOnce: %+v", st)
	}

	// The trial boot: B once, its gate passes.
	s, _, trial = bootOnce(t, sys, dir, "v2")
	if !trial {
		t.Fatal("the boot after TryOnce is not a trial")
	}
	if err := s.TryOnce(A); err == nil {
		t.Error("a trial slot may not try another before it is committed")
	}
	if got := s.KnownCritical(); len(got) != 1 || got[0] != "dns-lists" {
		t.Errorf("the trial's baseline of critical warnings: %v, want the good slot's [dns-lists]", got)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if e, _ := ParseEnv(sys.env); e.Get(KeyBootSlot) != B {
		t.Errorf("boot_slot %q after commit", e.Get(KeyBootSlot))
	}
	if st := s.Status(); st.Last == nil || st.Last.Outcome != OutcomeCommitted || st.Pending != nil {
		t.Errorf("status after commit: %+v", st)
	}
	if st := s.Status(); st.Trying || st.Booted != B {
		t.Errorf("status after commit: %+v, want slot B committed", st)
	}
	// The next update needs no reboot first.
	if err := s.TryOnce(A); err != nil {
		t.Fatalf("TryOnce right after a commit: %v", err)
	}
	if err := s.Discard(A); err != nil {
		t.Fatal(err)
	}
	s, _, trial = bootOnce(t, sys, dir, "v2")
	if trial || s.booted.Slot != B {
		t.Fatalf("after the commit the box boots %+v", s.booted)
	}

	// v3 in A crashes: its trial boot writes its record, then restarts;
	// GRUB cleared try_slot, so the next boot is B, which reports it.
	if err := s.TryOnce(A); err != nil {
		t.Fatal(err)
	}
	if _, _, trial = bootOnce(t, sys, dir, "v3"); !trial {
		t.Fatal("no trial")
	}
	s, h, trial := bootOnce(t, sys, dir, "v2")
	if trial || s.booted.Slot != B {
		t.Fatalf("after the crash the box boots %+v", s.booted)
	}
	w, ok := h.Get(WarnAbandoned)
	want := "update to slot A (version v3) abandoned: it restarted before its health gate passed (crash or hang)"
	if !ok || w.Message != want {
		t.Errorf("warning %+v, want %q", w, want)
	}
	hist, _ := s.History()
	if len(hist) != 2 || hist[1].Reason != ReasonRestart || hist[1].Version != "v3" {
		t.Errorf("history %+v", hist)
	}
	if _, err := os.Stat(filepath.Join(dir, "trial.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trial record left: %v", err)
	}
	// Still reported at the next boot, until an update is committed.
	if _, h, _ = bootOnce(t, sys, dir, "v2"); func() bool { _, ok := h.Get(WarnAbandoned); return !ok }() {
		t.Error("the abandoned update is no longer reported at the next boot")
	}
	if !strings.Contains(s.Status().String(), "last update: update to slot A (version v3) abandoned") {
		t.Errorf("status line %q", s.Status().String())
	}
}

func TestGateFailureIsRecordedByTheTrialItself(t *testing.T) {
	dir := t.TempDir()
	sys := &memSystem{env: InitialEnv()}
	s, _, _ := bootOnce(t, sys, dir, "v1")
	if err := s.TryOnce(B); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(B); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.TrySlot != "" || st.Pending != nil {
		t.Errorf("after Discard: %+v", st)
	}
	if err := s.TryOnce(B); err != nil {
		t.Fatal(err)
	}
	s, h, trial := bootOnce(t, sys, dir, "v2")
	if !trial {
		t.Fatal("no trial")
	}
	if err := s.Abandon(ReasonGate, "gate failed: uplinks: no uplink online"); err != nil {
		t.Fatal(err)
	}
	if w, _ := h.Get(WarnAbandoned); !strings.Contains(w.Message, "slot B (version v2) abandoned: gate failed: uplinks") {
		t.Errorf("warning %q", w.Message)
	}
	s, _, trial = bootOnce(t, sys, dir, "v1")
	if trial || s.booted.Slot != A {
		t.Fatalf("after the failed gate the box boots %+v", s.booted)
	}
	hist, _ := s.History()
	if len(hist) != 1 || hist[0].Reason != ReasonGate {
		t.Errorf("history %+v: the good slot recorded the trial again", hist)
	}
}

func TestTryOnceLeavesNoRecordWhenTheEnvironmentCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	sys := &memSystem{env: InitialEnv()}
	s, _, _ := bootOnce(t, sys, dir, "v1")
	sys.failEnv = true
	if err := s.TryOnce(B); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "trial.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trial record left after a failed TryOnce: %v", err)
	}
}

func TestNotABBox(t *testing.T) {
	s, err := New(box.Deps{}, Options{Dir: t.TempDir(), Sys: &memSystem{cmdline: "console=ttyAMA0 -- run"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Start() {
		t.Error("trial without slots")
	}
	if _, _, _, err := s.Inactive(); !errors.Is(err, ErrNotAB) {
		t.Errorf("Inactive: %v", err)
	}
	if err := s.TryOnce(B); !errors.Is(err, ErrNotAB) {
		t.Errorf("TryOnce: %v", err)
	}
}
