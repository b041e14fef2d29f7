package slots

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The two slots and the partitions (GPT names) the image gives them.
const (
	A       = "a"
	B       = "b"
	PartESP = "esp" // the EFI system partition: GRUB, grub.cfg, grubenv
)

// PartName is the GPT name of a slot's partition: system-a, system-b.
func PartName(slot string) string { return "system-" + slot }

// Other is the slot that is not slot.
func Other(slot string) string {
	if slot == A {
		return B
	}
	return A
}

func validSlot(s string) bool { return s == A || s == B }

// ErrNotAB says the box did not boot through the A/B boot loader (the
// lab, a development run, an image booted with -kernel): there is no
// inactive slot to update.
var ErrNotAB = errors.New("the box did not boot from an A/B slot (no passerelle.slot= on the kernel command line)")

// Booted is what the boot loader said on the kernel command line.
type Booted struct {
	Slot   string // a or b
	Trying bool   // booted once as try_slot: not committed yet
}

// ParseCmdline reads passerelle.slot= and passerelle.trying= from the
// kernel command line (before "--", after which the words are init's).
// Without passerelle.slot it returns ErrNotAB.
func ParseCmdline(cmdline string) (Booted, error) {
	var b Booted
	var trying string
	for _, f := range strings.Fields(cmdline) {
		if f == "--" {
			break
		}
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "passerelle.slot":
			b.Slot = v
		case "passerelle.trying":
			trying = v
		}
	}
	if b.Slot == "" {
		return Booted{}, ErrNotAB
	}
	if !validSlot(b.Slot) {
		return Booted{}, fmt.Errorf("kernel command line: passerelle.slot=%q: want a or b", b.Slot)
	}
	switch trying {
	case "1":
		b.Trying = true
	case "0", "":
	default:
		return Booted{}, fmt.Errorf("kernel command line: passerelle.trying=%q: want 0 or 1", trying)
	}
	return b, nil
}

// Trial is the record of a slot being tried (/perm/slots/trial.json):
// written by TryOnce in the good slot, completed by the trial boot right
// after /perm is mounted, removed once its outcome is recorded. A trial
// record that a later, non-trial boot finds is a trial that never
// finished: it crashed or hung.
type Trial struct {
	Slot        string    `json:"slot"`
	From        string    `json:"from"`              // the good slot it was requested from
	Version     string    `json:"version,omitempty"` // written by the trial boot itself
	RequestedAt time.Time `json:"requested_at,omitempty"`
	BootedAt    time.Time `json:"booted_at,omitempty"` // zero: the trial never reached /perm
	// Critical are the codes of the critical warnings the good slot had
	// when the trial was requested: the trial's health gate fails on any
	// other ("no new critical warning", as a configuration push).
	Critical []string `json:"critical,omitempty"`
}

// Outcomes and reasons of a trial.
const (
	OutcomeCommitted = "committed"
	OutcomeAbandoned = "abandoned"

	ReasonGate     = "gate-failed"   // the health gate did not pass within its window
	ReasonRestart  = "restarted"     // it restarted before the gate passed: crash or hang (watchdog)
	ReasonNoStart  = "never-started" // it never reached /perm: kernel or early boot failure
	ReasonBootFail = "boot-failed"   // the trial boot could not run its gate (e.g. no configuration)
)

// Result is what became of one trial (/perm/slots/history.json).
type Result struct {
	At      time.Time `json:"at"`
	Slot    string    `json:"slot"`
	From    string    `json:"from,omitempty"`
	Version string    `json:"version,omitempty"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Message says it for people: the health warning, `passerelle status`.
func (r Result) Message() string {
	v := r.Version
	if v == "" {
		v = "unknown"
	}
	head := fmt.Sprintf("update to slot %s (version %s)", strings.ToUpper(r.Slot), v)
	if r.Outcome == OutcomeCommitted {
		return head + " committed: its health gate passed"
	}
	return head + " abandoned: " + r.Detail
}

// Details of the abandoned outcomes found at a later boot.
const (
	detailRestart = "it restarted before its health gate passed (crash or hang)"
	detailNoStart = "it never reached its first boot step (the kernel or the init failed early)"
)

// settle decides, at a boot that is not a trial, what the trial t became:
// committed (the box booted it as the committed slot: only the record was
// lost), abandoned (the box is back on another slot), or still due (the
// boot loader has not tried it yet: ok is false).
func settle(b Booted, env Env, t Trial, now time.Time) (Result, bool) {
	if env.Get(KeyTrySlot) == t.Slot {
		return Result{}, false
	}
	r := Result{At: now, Slot: t.Slot, From: t.From, Version: t.Version}
	if t.Slot == b.Slot && env.Get(KeyBootSlot) == b.Slot {
		r.Outcome = OutcomeCommitted
		return r, true
	}
	r.Outcome = OutcomeAbandoned
	if t.BootedAt.IsZero() {
		r.Reason, r.Detail = ReasonNoStart, detailNoStart
	} else {
		r.Reason, r.Detail = ReasonRestart, detailRestart
	}
	return r, true
}

// historyMax is how many results are kept.
const historyMax = 20

func appendHistory(h []Result, r Result) []Result {
	h = append(h, r)
	if len(h) > historyMax {
		h = h[len(h)-historyMax:]
	}
	return h
}
