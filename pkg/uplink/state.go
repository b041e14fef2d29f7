package uplink

import (
	"fmt"
	"slices"
	"time"
)

// State is an uplink's health.
type State int

const (
	// StateUnknown: no probe round has finished yet (boot, new uplink).
	// The link is used if it has carrier, so the school has internet
	// from the first second; the first rounds then confirm or refute it.
	StateUnknown State = iota
	// StateOnline: probes pass within the latency and loss thresholds.
	StateOnline
	// StateDegraded: probes pass, but the round-trip time or the loss is
	// above its threshold. The link is used only when no uplink is online.
	StateDegraded
	// StateOffline: no carrier, or down_after failed rounds in a row.
	// It comes back after up_after good rounds in a row.
	StateOffline
)

var stateNames = [...]string{"unknown", "online", "degraded", "offline"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// usable says whether a link in this state may carry traffic.
func (s State) usable() bool { return s != StateOffline }

// Round is the outcome of one probe round: every target probed once
// or more, each answer awaited up to the timeout.
type Round struct {
	Seq       uint64
	Start     time.Time
	Sent      int           // probes sent
	Answered  int           // probes answered in time
	TargetsUp int           // targets that answered at least once
	RTT       time.Duration // mean of each answering target's best round-trip time
	Err       error         // why a probe could not be sent, if one could not
}

// Windows over which the degraded state is judged. Loss is measured over
// many rounds so that a line with a few percent of random loss does not
// flap between online and degraded; leaving a state needs a clear margin
// (hysteresis).
const (
	lossWindow    = 150 // rounds: 30 s at the default 200 ms
	lossMinRounds = 100 // no loss verdict on fewer rounds
	rttWindow     = 10  // rounds whose median RTT is compared to degraded_rtt
	recoverRTT    = 0.8 // leave degraded below this fraction of degraded_rtt...
	recoverLoss   = 0.5 // ...and this fraction of degraded_loss
)

// tracker turns carrier events and probe rounds into a State with
// hysteresis. It is pure: times come with the events.
type tracker struct {
	p Probe

	state   State
	carrier bool // assumed until the first link event says otherwise
	fails   int  // failed rounds in a row
	goods   int  // passed rounds in a row
	since   time.Time
	// prevSince is when the previous state began: "after 2m offline".
	prevSince time.Time
	reason    string // why the link is in its state, said after its name: "renater lost 3 probe rounds in a row"

	sent, answered []int           // per round, the last lossWindow rounds
	rtts           []time.Duration // passed rounds' RTT, the last rttWindow
	transitions    int
}

func newTracker(p Probe, now time.Time) *tracker {
	return &tracker{p: p, carrier: true, since: now, reason: "is not probed yet"}
}

// setProbe takes new probe settings (a config reload) without losing the
// link's history.
func (t *tracker) setProbe(p Probe) { t.p = p }

func (t *tracker) set(s State, now time.Time, reason string) bool {
	t.reason = reason
	if s == t.state {
		return false
	}
	t.prevSince = t.since
	t.state, t.since = s, now
	t.transitions++
	if s == StateOffline {
		t.sent, t.answered, t.rtts = t.sent[:0], t.answered[:0], t.rtts[:0]
	}
	return true
}

// carrierChanged records a link event; it reports whether the state
// changed.
func (t *tracker) carrierChanged(up bool, now time.Time) bool {
	if up == t.carrier {
		return false
	}
	t.carrier = up
	t.fails, t.goods = 0, 0
	if !up {
		return t.set(StateOffline, now, "lost its carrier (cable, modem or ISP box)")
	}
	if t.state == StateOffline {
		t.reason = fmt.Sprintf("has its carrier back and waits for %d good probe rounds", t.p.UpAfter)
	}
	return false
}

// round records a finished probe round, in sequence order; it reports
// whether the state changed.
func (t *tracker) round(r Round, now time.Time) bool {
	pass := r.TargetsUp >= t.p.Quorum
	// Loss and latency describe a working link: rounds of an outage are
	// not counted, or a link back from an outage would look degraded
	// until the outage left the window.
	if t.state != StateOffline && t.carrier {
		t.sent = appendWindow(t.sent, r.Sent, lossWindow)
		t.answered = appendWindow(t.answered, r.Answered, lossWindow)
	}
	if pass {
		t.fails = 0
		t.goods++
		if t.state != StateOffline {
			t.rtts = appendWindow(t.rtts, r.RTT, rttWindow)
		}
	} else {
		t.goods = 0
		t.fails++
	}
	if !t.carrier {
		return false // probes cannot bring back a link without carrier
	}
	switch {
	case !pass && t.state != StateOffline && t.fails >= t.p.DownAfter:
		return t.set(StateOffline, now, t.failReason(r))
	case !pass:
		return false
	case t.state == StateOffline && t.goods < t.p.UpAfter:
		t.reason = fmt.Sprintf("answers again (%d of %d good probe rounds)", t.goods, t.p.UpAfter)
		return false
	}
	// Passing and not (or no longer) offline: online or degraded.
	if why := t.degradedBy(t.state == StateDegraded); why != "" {
		return t.set(StateDegraded, now, why)
	}
	switch t.state {
	case StateOffline:
		return t.set(StateOnline, now, fmt.Sprintf("is back after %d good probe rounds in a row", t.goods))
	case StateDegraded:
		return t.set(StateOnline, now, "has its latency and loss back under their thresholds")
	}
	return t.set(StateOnline, now, "answers its probes")
}

func (t *tracker) failReason(r Round) string {
	s := fmt.Sprintf("lost %d probe rounds in a row (fewer than %d of %d targets answered within %s)",
		t.fails, t.p.Quorum, len(t.p.Targets), t.p.Timeout)
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// degradedBy says why the link is degraded, or "" if it is not. Staying
// degraded needs less than entering it, so a link on the edge does not
// flap.
func (t *tracker) degradedBy(already bool) string {
	rttLimit, lossLimit := float64(t.p.DegradedRTT), float64(t.p.DegradedLoss)
	if already {
		rttLimit *= recoverRTT
		lossLimit *= recoverLoss
	}
	if rtt := t.medianRTT(); len(t.rtts) >= rttWindow/2 && float64(rtt) > rttLimit {
		return fmt.Sprintf("has a round-trip time of %s, above %s", rtt.Round(time.Millisecond), t.p.DegradedRTT)
	}
	if loss, ok := t.loss(); ok && loss*100 > lossLimit {
		return fmt.Sprintf("lost %.0f%% of its probes over the last %d rounds, above %d%%", loss*100, len(t.sent), t.p.DegradedLoss)
	}
	return ""
}

func (t *tracker) medianRTT() time.Duration {
	if len(t.rtts) == 0 {
		return 0
	}
	s := slices.Clone(t.rtts)
	slices.Sort(s)
	return s[len(s)/2]
}

// loss is the fraction of probes lost over the window, once the window
// holds enough rounds to say.
func (t *tracker) loss() (float64, bool) {
	if len(t.sent) < lossMinRounds {
		return 0, false
	}
	var sent, answered int
	for i := range t.sent {
		sent += t.sent[i]
		answered += t.answered[i]
	}
	if sent == 0 {
		return 0, false
	}
	return 1 - float64(answered)/float64(sent), true
}

func appendWindow[T any](w []T, v T, n int) []T {
	if len(w) >= n {
		w = append(w[:0], w[len(w)-n+1:]...)
	}
	return append(w, v)
}
