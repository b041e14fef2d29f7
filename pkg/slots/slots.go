package slots

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

// Structured events of the daemon's log ("event" attribute).
const (
	EvBooted    = "slot-booted"    // slot, trying, version, boot_slot
	EvTrial     = "slot-trial"     // slot, from, version: a trial boot; the health gate runs
	EvTryOnce   = "slot-try-once"  // slot, from: the next boot tries slot
	EvCommitted = "slot-committed" // slot, from, version
	EvAbandoned = "slot-abandoned" // slot, from, version, reason, detail
)

// WarnAbandoned is the health warning of an abandoned update, raised at
// every boot until a later update is committed.
const WarnAbandoned = "update-abandoned"

// DefaultDir is where the records live.
const DefaultDir = "/perm/slots"

// System is the box's side of the slots: the kernel command line, the
// partitions by GPT name and the environment block on the EFI system
// partition (slots_linux.go).
type System interface {
	Cmdline() (string, error)
	// Partition returns the device of the partition with that GPT name
	// and its size in bytes.
	Partition(name string) (device string, size int64, err error)
	ReadEnv() ([]byte, error)
	// WriteEnv replaces the environment block durably.
	WriteEnv(block []byte) error
}

// Options shape Slots.
type Options struct {
	Dir     string // records; default DefaultDir
	Version string // of the running firmware
	Sys     System // default the Linux system
}

// Slots is the running box's view of its two slots.
type Slots struct {
	log    *slog.Logger
	health *health.Registry
	now    func() time.Time
	o      Options
	met    *metrics

	booted Booted
	err    error // why the box is not A/B (ErrNotAB, or a command line error)
	trial  Trial // of this boot, when it is a trial

	mu sync.Mutex // env and records: one writer at a time
}

// New reads how the box booted. It never fails on a box that did not
// boot through the A/B loader: Booted then says so, and Inactive,
// TryOnce and Commit return the reason.
func New(d box.Deps, o Options) (*Slots, error) {
	d = d.For("slots")
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Sys == nil {
		o.Sys = linuxSystem()
	}
	met, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Slots{log: d.Log, health: d.Health, now: d.Now, o: o, met: met}
	cmd, err := o.Sys.Cmdline()
	if err == nil {
		s.booted, err = ParseCmdline(cmd)
	}
	s.err = err
	return s, nil
}

// Booted returns the slot the box runs and whether it is a trial, or why
// the box has no slots.
func (s *Slots) Booted() (Booted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.booted, s.err
}

// Start settles the records at boot, right after /perm is mounted: on a
// trial boot it writes the trial record (slot, version, boot time) and
// returns true (the health gate must run, then Commit or Abandon); on
// other boots it decides what an unfinished earlier trial became, and
// raises the warning of the last abandoned update.
func (s *Slots) Start() (trial bool) {
	if s.err != nil {
		if !errors.Is(s.err, ErrNotAB) {
			s.log.Error("slots: the kernel command line is not understood", "err", s.err)
		}
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.booted
	s.met.booted.WithLabelValues(b.Slot).Set(1)
	env, envErr := s.readEnv()
	s.log.Info("booted from a system slot", "event", EvBooted, "slot", b.Slot, "trying", b.Trying,
		"version", s.o.Version, "boot_slot", env.Get(KeyBootSlot), "env_err", errString(envErr))
	t, terr := s.readTrial()
	if terr != nil && !errors.Is(terr, os.ErrNotExist) {
		s.log.Error("slots: trial record unreadable; ignored", "err", terr)
	}
	if b.Trying {
		s.met.trial.Set(1)
		if terr != nil || t.Slot != b.Slot {
			t = Trial{Slot: b.Slot, From: Other(b.Slot)}
		}
		t.Version, t.BootedAt = s.o.Version, s.now()
		s.trial = t
		if err := s.writeJSON("trial.json", t); err != nil {
			s.log.Error("slots: could not write the trial record", "err", err)
		}
		s.log.Info("trying a new system slot once: the health gate decides", "event", EvTrial,
			"slot", b.Slot, "from", t.From, "version", t.Version)
		return true
	}
	if terr == nil {
		if envErr != nil {
			s.log.Error("slots: the environment block is unreadable; the trial record is kept", "err", envErr)
		} else if r, ok := settle(b, env, t, s.now()); ok {
			s.finish(r)
		}
	}
	if h, err := s.History(); err == nil && len(h) > 0 && h[len(h)-1].Outcome == OutcomeAbandoned {
		s.health.Raise("slots", WarnAbandoned, health.Warn, h[len(h)-1].Message())
	}
	return false
}

// KnownCritical returns, on a trial boot, the critical warnings the good
// slot had when it asked for the trial: the health gate's baseline.
func (s *Slots) KnownCritical() []string { return s.trial.Critical }

// Inactive returns the slot the box does not run, its partition and
// size: where an update is written.
func (s *Slots) Inactive() (slot, device string, size int64, err error) {
	if s.err != nil {
		return "", "", 0, s.err
	}
	slot = Other(s.booted.Slot)
	device, size, err = s.o.Sys.Partition(PartName(slot))
	if err != nil {
		return "", "", 0, fmt.Errorf("slot %s: %w", slot, err)
	}
	return slot, device, size, nil
}

// TryOnce makes the next boot try slot once (it must be the inactive
// one: the running slot is never a target). If that boot does not
// commit, the boot after it is the committed slot again.
func (s *Slots) TryOnce(slot string) error {
	if s.err != nil {
		return s.err
	}
	if !validSlot(slot) {
		return fmt.Errorf("slot %q: want a or b", slot)
	}
	if slot == s.booted.Slot {
		return fmt.Errorf("slot %s is the running one: only the inactive slot %s can be tried", slot, Other(slot))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	env, err := s.readEnv()
	if err != nil {
		return err
	}
	if s.booted.Trying {
		return fmt.Errorf("slot %s is itself on trial: commit it before trying another", s.booted.Slot)
	}
	t := Trial{Slot: slot, From: s.booted.Slot, RequestedAt: s.now()}
	for _, w := range s.health.List() {
		if w.Severity == health.Critical {
			t.Critical = append(t.Critical, w.Code)
		}
	}
	if err := s.writeJSON("trial.json", t); err != nil {
		return fmt.Errorf("trial record: %w", err)
	}
	if err := env.Set(KeyTrySlot, slot); err != nil {
		return err
	}
	if err := s.writeEnv(env); err != nil {
		_ = os.Remove(filepath.Join(s.o.Dir, "trial.json"))
		return err
	}
	s.log.Info("the next boot tries the other system slot once", "event", EvTryOnce, "slot", slot, "from", s.booted.Slot)
	return nil
}

// Discard cancels an earlier TryOnce of slot (pkg/update calls it before
// it overwrites the slot, so a half-written slot is never tried). A slot
// not marked is no error.
func (s *Slots) Discard(slot string) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	env, err := s.readEnv()
	if err != nil {
		return err
	}
	if env.Get(KeyTrySlot) != slot {
		return nil
	}
	if err := env.Set(KeyTrySlot, ""); err != nil {
		return err
	}
	if err := s.writeEnv(env); err != nil {
		return err
	}
	if t, err := s.readTrial(); err == nil && t.Slot == slot {
		_ = os.Remove(filepath.Join(s.o.Dir, "trial.json"))
	}
	s.log.Info("the trial of the other system slot is cancelled", "slot", slot)
	return nil
}

// Commit makes the running trial slot the committed one (the health gate
// passed).
func (s *Slots) Commit() error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.booted.Trying {
		return fmt.Errorf("slot %s is not on trial: nothing to commit", s.booted.Slot)
	}
	env, err := s.readEnv()
	if err != nil {
		return err
	}
	if err := env.Set(KeyBootSlot, s.booted.Slot); err != nil {
		return err
	}
	if err := env.Set(KeyTrySlot, ""); err != nil {
		return err
	}
	if err := s.writeEnv(env); err != nil {
		return err
	}
	s.finish(Result{At: s.now(), Slot: s.booted.Slot, From: Other(s.booted.Slot), Version: s.o.Version, Outcome: OutcomeCommitted})
	s.met.trial.Set(0)
	// Committed: the running slot is the good one now, and the next
	// update may target the other without a reboot first.
	s.booted.Trying = false
	return nil
}

// Abandon records that the running trial failed (its health gate, with
// why). The caller reboots: the boot loader already cleared try_slot, so
// the next boot is the committed slot.
func (s *Slots) Abandon(reason, detail string) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.booted.Trying {
		return fmt.Errorf("slot %s is not on trial: nothing to abandon", s.booted.Slot)
	}
	s.finish(Result{At: s.now(), Slot: s.booted.Slot, From: Other(s.booted.Slot), Version: s.o.Version,
		Outcome: OutcomeAbandoned, Reason: reason, Detail: detail})
	return nil
}

// finish records r, removes the trial record, logs, counts, and sets the
// warning. s.mu is held.
func (s *Slots) finish(r Result) {
	h, err := s.History()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("slots: history unreadable; starting a new one", "err", err)
	}
	if err := s.writeJSON("history.json", appendHistory(h, r)); err != nil {
		s.log.Error("slots: could not record the outcome", "err", err)
	}
	if err := os.Remove(filepath.Join(s.o.Dir, "trial.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("slots: could not remove the trial record", "err", err)
	}
	s.met.updates.WithLabelValues(r.Outcome, r.Reason).Inc()
	if r.Outcome == OutcomeCommitted {
		s.health.Clear(WarnAbandoned)
		s.log.Info(r.Message(), "event", EvCommitted, "slot", r.Slot, "from", r.From, "version", r.Version)
		return
	}
	s.health.Raise("slots", WarnAbandoned, health.Warn, r.Message())
	s.log.Warn(r.Message(), "event", EvAbandoned, "slot", r.Slot, "from", r.From, "version", r.Version,
		"reason", r.Reason, "detail", r.Detail)
}

// Status is the slots' state for `passerelle status` and the status page.
type Status struct {
	Booted   string  `json:"booted,omitempty"`
	Trying   bool    `json:"trying,omitempty"`
	BootSlot string  `json:"boot_slot,omitempty"`
	TrySlot  string  `json:"try_slot,omitempty"`
	Pending  *Trial  `json:"pending,omitempty"` // a trial requested or running
	Last     *Result `json:"last,omitempty"`
	Err      string  `json:"err,omitempty"` // why there are no slots
}

// Status reads the state; it never fails, it says what it could not read.
func (s *Slots) Status() Status {
	if s.err != nil {
		return Status{Err: s.err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Booted: s.booted.Slot, Trying: s.booted.Trying}
	if env, err := s.readEnv(); err == nil {
		st.BootSlot, st.TrySlot = env.Get(KeyBootSlot), env.Get(KeyTrySlot)
	} else {
		st.Err = err.Error()
	}
	if t, err := s.readTrial(); err == nil {
		st.Pending = &t
	}
	if h, _ := s.History(); len(h) > 0 {
		st.Last = &h[len(h)-1]
	}
	return st
}

// String is the one line of `passerelle status`.
func (st Status) String() string {
	if st.Booted == "" {
		return "no A/B slots: " + st.Err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "slot %s", strings.ToUpper(st.Booted))
	if st.Trying {
		b.WriteString(" (on trial: the health gate decides)")
	} else {
		b.WriteString(" (committed)")
	}
	if st.TrySlot != "" {
		fmt.Fprintf(&b, "; next boot tries slot %s once", strings.ToUpper(st.TrySlot))
	}
	if st.Last != nil {
		b.WriteString("; last update: " + st.Last.Message())
	}
	return b.String()
}

// History returns the recorded outcomes, oldest first.
func (s *Slots) History() ([]Result, error) {
	var h []Result
	data, err := os.ReadFile(filepath.Join(s.o.Dir, "history.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(s.o.Dir, "history.json"), err)
	}
	return h, nil
}

func (s *Slots) readTrial() (Trial, error) {
	var t Trial
	p := filepath.Join(s.o.Dir, "trial.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("%s: %w", p, err)
	}
	if !validSlot(t.Slot) {
		return t, fmt.Errorf("%s: slot %q: want a or b", p, t.Slot)
	}
	return t, nil
}

func (s *Slots) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.o.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Replace(filepath.Join(s.o.Dir, name), append(data, '\n'), 0o644)
}

func (s *Slots) readEnv() (Env, error) {
	b, err := s.o.Sys.ReadEnv()
	if err != nil {
		return Env{}, fmt.Errorf("grubenv: %w", err)
	}
	return ParseEnv(b)
}

func (s *Slots) writeEnv(e Env) error {
	b, err := e.Render()
	if err != nil {
		return err
	}
	if err := s.o.Sys.WriteEnv(b); err != nil {
		return fmt.Errorf("grubenv: %w", err)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

type metrics struct {
	updates *prometheus.CounterVec
	booted  *prometheus.GaugeVec
	trial   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_slot_updates_total",
			Help: "System slot trials settled at this boot, by outcome (committed, abandoned) and reason."}, []string{"outcome", "reason"}),
		booted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_slot_booted",
			Help: "1 for the system slot the box runs (a or b)."}, []string{"slot"}),
		trial: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_slot_trial",
			Help: "1 while the running slot is on trial (not committed yet)."}),
	}
	for _, c := range []prometheus.Collector{m.updates, m.booted, m.trial} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("slots metrics: %w", err)
		}
	}
	return m, nil
}
