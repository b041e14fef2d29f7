package uplink

import (
	"fmt"
	"net/netip"
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
	// PerTarget holds the answers of each target, in Probe.Targets order
	// (each was sent Sent/len(PerTarget) probes); nil when unknown, and
	// loss is then judged over every probe.
	PerTarget []int
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

	// A target that answers none of its probes for silentAfter rounds in
	// a row while another target answers is silent: its probes leave the
	// loss figure (issue 13: one filtered target of three is 33 % "loss"
	// on a perfect line) until it answers again, with a history that
	// starts then. It is reported (event, warning) once silent for
	// silentReport.
	silentAfter  = 10
	silentReport = 10 * time.Second

	// Flap damping: a link that goes down again within flapWindow of its
	// previous fall flaps; each flap doubles the hold-down (from holdMin,
	// up to holdMax), the time it must then stay good before it carries
	// new flows again (on top of up_after rounds). The hold-down ends
	// after a stable period: usable for max(stableMin, 2 x hold-down).
	flapWindow = time.Minute
	holdMin    = 5 * time.Second
	holdMax    = 5 * time.Minute
	stableMin  = time.Minute

	// lateWindow: answer round-trip times kept to size the round timeout.
	lateWindow = 10
	// lateFactor: an answer may take up to lateFactor x degraded_rtt (or
	// the timeout if longer) and still prove the link alive.
	lateFactor = 4

	// DNS check of the upstream resolvers through each uplink: broken
	// after dnsDownAfter failed checks in a row, fixed after dnsUpAfter
	// good ones.
	dnsDownAfter = 3
	dnsUpAfter   = 2
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

	// Per target (rounds with PerTarget): answers per round over the
	// window (reset while silent), rounds in a row without an answer, and
	// whether the target is silent.
	tw     [][]int
	quiet  []int
	silent []bool

	// Flap damping.
	hold      time.Duration // current hold-down; 0: none
	flaps     int           // flaps since the damping began
	lastDown  time.Time     // when the link last went down (offline, or carrier lost)
	goodSince time.Time     // first round of the current good streak
	usableAt  time.Time     // when the link last became usable after being offline
	damping   string        // a change of the damping to report, taken by takeDamping

	answerRTTs []time.Duration // the last answers' RTT, in time or late, any state

	dnsBroken       bool
	dnsFails, dnsOK int
	dnsWhy          string
}

func newTracker(p Probe, now time.Time) *tracker {
	return &tracker{p: p, carrier: true, since: now, reason: "is not probed yet"}
}

// setProbe takes new probe settings (a config reload) without losing the
// link's history.
func (t *tracker) setProbe(p Probe) {
	if len(p.Targets) != len(t.p.Targets) {
		t.tw, t.quiet, t.silent = nil, nil, nil
	}
	t.p = p
}

// lateLimit is how long an answer may take and still prove the link
// alive: lateFactor x degraded_rtt, or the timeout if longer. An answer
// after the timeout does not pass its round, but it resets the count of
// failed rounds and is a latency sample: a slow link is degraded, not
// offline (issue 13).
func (t *tracker) lateLimit() time.Duration {
	return max(t.p.Timeout, lateFactor*t.p.DegradedRTT)
}

// roundTimeout is how long the next round waits for answers: the
// configured timeout, or twice the slowest recent answer if longer (a
// slow link's rounds then pass), at most lateLimit. A blackhole on a
// fast link is thus still found within down_after x interval + timeout.
func (t *tracker) roundTimeout() time.Duration {
	to := t.p.Timeout
	for _, r := range t.answerRTTs {
		to = max(to, 2*r)
	}
	return min(to, t.lateLimit())
}

// late records an answer that came after its round's timeout but within
// lateLimit.
func (t *tracker) late(rtt time.Duration) {
	t.answerRTTs = appendWindow(t.answerRTTs, rtt, lateWindow)
	if !t.carrier || t.state == StateOffline {
		return
	}
	t.fails = 0
	t.rtts = appendWindow(t.rtts, rtt, rttWindow)
}

// down records that the link went down at now (offline, or its carrier
// lost) and grows the hold-down if it flaps.
func (t *tracker) down(now time.Time) {
	if !t.lastDown.IsZero() && now.Sub(t.lastDown) < flapWindow {
		t.flaps++
		t.hold = min(max(2*t.hold, holdMin), holdMax)
		t.damping = fmt.Sprintf("went down %d times within a minute of the previous fall; it must now stay good for %s before it carries new connections again", t.flaps+1, t.hold)
	}
	t.lastDown = now
	t.goodSince = time.Time{}
}

// takeDamping returns a change of the flap damping not yet reported.
func (t *tracker) takeDamping() string {
	d := t.damping
	t.damping = ""
	return d
}

// stable ends the damping once the link has been usable long enough.
func (t *tracker) stable(now time.Time) {
	if t.hold == 0 || t.usableAt.IsZero() || !t.state.usable() {
		return
	}
	if now.Sub(t.usableAt) >= max(stableMin, 2*t.hold) {
		t.damping = fmt.Sprintf("is stable again (usable for %s): the flap hold-down of %s is lifted", now.Sub(t.usableAt).Round(time.Second), t.hold)
		t.hold, t.flaps = 0, 0
	}
}

// dnsResult records a check of the DNS upstreams through the link; it
// reports whether the state changed.
func (t *tracker) dnsResult(ok bool, why string, now time.Time) bool {
	if ok {
		t.dnsFails = 0
		t.dnsOK++
		if t.dnsBroken && t.dnsOK >= dnsUpAfter {
			t.dnsBroken = false
		}
	} else {
		t.dnsOK = 0
		t.dnsFails++
		t.dnsWhy = why
		if t.dnsFails >= dnsDownAfter {
			t.dnsBroken = true
		}
	}
	if !t.carrier || (t.state != StateOnline && t.state != StateDegraded) {
		return false
	}
	if why := t.degradedBy(t.state == StateDegraded); why != "" {
		return t.set(StateDegraded, now, why)
	}
	if t.state == StateDegraded {
		return t.set(StateOnline, now, "has its latency, loss and DNS back to normal")
	}
	return false
}

// silentTargets returns the targets silent for at least silentReport
// while others answer.
func (t *tracker) silentTargets() []netip.Addr {
	var out []netip.Addr
	need := int(silentReport / max(t.p.Interval, time.Millisecond))
	for i, s := range t.silent {
		if s && t.quiet[i] >= max(need, silentAfter) && i < len(t.p.Targets) {
			out = append(out, t.p.Targets[i])
		}
	}
	return out
}

// perTarget records a round's answers per target (see silentAfter).
func (t *tracker) perTarget(r Round) {
	n := len(r.PerTarget)
	if n == 0 {
		return
	}
	if len(t.tw) != n {
		t.tw, t.quiet, t.silent = make([][]int, n), make([]int, n), make([]bool, n)
	}
	record := t.state != StateOffline && t.carrier
	for i, a := range r.PerTarget {
		if a > 0 {
			t.quiet[i] = 0
			if t.silent[i] {
				t.silent[i], t.tw[i] = false, t.tw[i][:0]
			}
		} else {
			t.quiet[i]++
		}
		others := r.TargetsUp > 0
		if !t.silent[i] && t.quiet[i] >= silentAfter && others {
			t.silent[i], t.tw[i] = true, t.tw[i][:0]
		}
		if record && !t.silent[i] {
			t.tw[i] = appendWindow(t.tw[i], a, lossWindow)
		}
	}
}

func (t *tracker) set(s State, now time.Time, reason string) bool {
	t.reason = reason
	if s == t.state {
		return false
	}
	prev := t.state
	t.prevSince = t.since
	t.state, t.since = s, now
	t.transitions++
	if s == StateOffline {
		t.sent, t.answered, t.rtts = t.sent[:0], t.answered[:0], t.rtts[:0]
		for i := range t.tw {
			t.tw[i] = t.tw[i][:0]
		}
		if t.carrier {
			t.down(now) // a carrier loss was recorded already
		}
	}
	if prev == StateOffline && s.usable() {
		t.usableAt = now
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
		t.down(now)
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
	t.perTarget(r)
	if t.state != StateOffline && t.carrier {
		t.sent = appendWindow(t.sent, r.Sent, lossWindow)
		t.answered = appendWindow(t.answered, r.Answered, lossWindow)
	}
	if pass {
		t.fails = 0
		t.goods++
		if t.goods == 1 || t.goodSince.IsZero() {
			t.goodSince = now
		}
		t.answerRTTs = appendWindow(t.answerRTTs, r.RTT, lateWindow)
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
	case t.state == StateOffline && now.Sub(t.goodSince) < t.hold:
		t.reason = fmt.Sprintf("answers again but flapped: held down until it has been good for %s (%s so far)",
			t.hold, now.Sub(t.goodSince).Round(100*time.Millisecond))
		return false
	}
	defer t.stable(now)
	// Passing and not (or no longer) offline: online or degraded.
	if why := t.degradedBy(t.state == StateDegraded); why != "" {
		return t.set(StateDegraded, now, why)
	}
	switch t.state {
	case StateOffline:
		if t.hold > 0 {
			return t.set(StateOnline, now, fmt.Sprintf("is back after %s of good probe rounds (flap hold-down)", now.Sub(t.goodSince).Round(100*time.Millisecond)))
		}
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
	if t.dnsBroken {
		return "carries traffic but not DNS: " + t.dnsWhy
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
// holds enough rounds to say. With per-target answers, silent targets
// are left out (see silentAfter).
func (t *tracker) loss() (float64, bool) {
	if len(t.sent) < lossMinRounds {
		return 0, false
	}
	if n := len(t.tw); n > 0 && len(t.p.Targets) == n {
		per := probesPerTarget(t.p.Kind)
		var sent, answered int
		for i, w := range t.tw {
			if t.silent[i] {
				continue
			}
			sent += per * len(w)
			for _, a := range w {
				answered += a
			}
		}
		if sent == 0 {
			return 0, false
		}
		return max(0, 1-float64(answered)/float64(sent)), true
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
