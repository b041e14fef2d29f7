package uplink

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 13: faults that are not a cable pull. The tracker is pure (times
// come with the events), so these tests run minutes of rounds instantly.

// rounder feeds rounds every interval from a start time.
type rounder struct {
	tr  *tracker
	now time.Time
}

func (r *rounder) feed(n int, round Round) (changes int) {
	for range n {
		r.now = r.now.Add(r.tr.p.Interval)
		if r.tr.round(round, r.now) {
			changes++
		}
	}
	return changes
}

// threeTargets is a round of the three-target default probing: each
// target answered that many of its two probes.
func threeTargets(a, b, c int) Round {
	r := Round{Sent: 6, PerTarget: []int{a, b, c}, RTT: 5 * time.Millisecond}
	for _, n := range r.PerTarget {
		r.Answered += n
		if n > 0 {
			r.TargetsUp++
		}
	}
	return r
}

func TestTrackerSilentTargetIsNotLoss(t *testing.T) {
	r := &rounder{tr: newTracker(defaultProbe(3), t0), now: t0}
	r.feed(1, threeTargets(2, 2, 2))
	if r.tr.state != StateOnline {
		t.Fatalf("state %s", r.tr.state)
	}
	// One target silent for 10 minutes: before the fix, 33 % loss made
	// the link degraded after ~17 s.
	if n := r.feed(3000, threeTargets(2, 2, 0)); n != 0 || r.tr.state != StateOnline {
		t.Fatalf("one silent target of three: %d state changes, state %s (%s)", n, r.tr.state, r.tr.reason)
	}
	if got := r.tr.silentTargets(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("203.0.113.12")}) {
		t.Errorf("silent targets %v, want 203.0.113.12", got)
	}
	if loss, ok := r.tr.loss(); !ok || loss != 0 {
		t.Errorf("loss %v (%v), want 0 over the answering targets", loss, ok)
	}
	// It answers again: reported no more, and its silent past is no loss.
	if n := r.feed(200, threeTargets(2, 2, 2)); n != 0 {
		t.Errorf("target back: %d state changes (%s)", n, r.tr.reason)
	}
	if got := r.tr.silentTargets(); len(got) != 0 {
		t.Errorf("silent targets %v after it answers again", got)
	}
}

func TestTrackerSilentTargetReportedAfterTenSeconds(t *testing.T) {
	r := &rounder{tr: newTracker(defaultProbe(3), t0), now: t0}
	r.feed(1, threeTargets(2, 2, 2))
	r.feed(49, threeTargets(2, 0, 2)) // 9.8 s
	if got := r.tr.silentTargets(); len(got) != 0 {
		t.Fatalf("reported after 9.8 s: %v", got)
	}
	r.feed(1, threeTargets(2, 0, 2))
	if got := r.tr.silentTargets(); len(got) != 1 {
		t.Fatalf("not reported after 10 s: %v", got)
	}
}

func TestTrackerLossOfAnsweringTargetsStillDegrades(t *testing.T) {
	r := &rounder{tr: newTracker(defaultProbe(3), t0), now: t0}
	r.feed(1, threeTargets(2, 2, 2))
	// Every target loses one probe of two (50 %): no target is silent.
	r.feed(lossMinRounds, threeTargets(1, 1, 1))
	if r.tr.state != StateDegraded {
		t.Fatalf("state %s with 50%% loss on every target", r.tr.state)
	}
	// One silent target, the two others at 50 %: still degraded.
	r2 := &rounder{tr: newTracker(defaultProbe(3), t0), now: t0}
	r2.feed(1, threeTargets(2, 2, 2))
	r2.feed(lossMinRounds, threeTargets(1, 1, 0))
	if r2.tr.state != StateDegraded {
		t.Fatalf("state %s: the loss of the answering targets must still count", r2.tr.state)
	}
}

func TestTrackerLossOverEveryProbeWithoutPerTarget(t *testing.T) {
	// Rounds without per-target detail (older callers) keep the former
	// rule: loss over every probe.
	r := &rounder{tr: newTracker(defaultProbe(3), t0), now: t0}
	r.feed(lossMinRounds+1, Round{Sent: 6, Answered: 4, TargetsUp: 2})
	if r.tr.state != StateDegraded {
		t.Fatalf("state %s", r.tr.state)
	}
}

// TestTrackerFlapDamping: a carrier going down and up every 2 s for a
// minute. Without damping the link came back after up_after rounds each
// time (30 returns a minute, each a switch and a flush); with it, the
// hold-down doubles and the link stays out.
func TestTrackerFlapDamping(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	now := t0
	step := func(d time.Duration, up bool) {
		end := now.Add(d)
		for now.Before(end) {
			now = now.Add(tr.p.Interval)
			if up {
				tr.round(good(time.Millisecond), now)
			} else {
				tr.round(failed(), now)
			}
		}
	}
	step(time.Second, true)
	returns := 0
	for range 30 { // 60 s: 1 s without carrier, 1.2 s with
		tr.carrierChanged(false, now)
		step(time.Second, false)
		tr.carrierChanged(true, now)
		before := tr.transitions
		step(1200*time.Millisecond, true)
		if tr.transitions > before {
			returns++
		}
	}
	if returns > 2 {
		t.Errorf("the flapping link came back %d times in a minute; damping should keep it out after the second fall", returns)
	}
	if tr.hold != holdMax {
		t.Errorf("hold-down %s after 30 flaps, want the maximum %s", tr.hold, holdMax)
	}
	// Stable again (good for 1.2 s already): it comes back once good for
	// the hold-down...
	step(holdMax-3*time.Second, true)
	if tr.state != StateOffline {
		t.Fatalf("back before the hold-down (%s)", tr.reason)
	}
	step(3*time.Second, true)
	if tr.state != StateOnline {
		t.Fatalf("state %s after the hold-down (%s)", tr.state, tr.reason)
	}
	// ...and the damping ends after a stable period.
	step(2*holdMax+time.Second, true)
	if tr.hold != 0 || tr.flaps != 0 {
		t.Errorf("hold-down %s, flaps %d after a stable period", tr.hold, tr.flaps)
	}
	if d := tr.takeDamping(); !strings.Contains(d, "stable again") {
		t.Errorf("damping message %q", d)
	}
}

func TestTrackerDampingGrowsByDoubling(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	now := t0
	var holds []time.Duration
	for range 9 {
		tr.carrierChanged(false, now)
		now = now.Add(2 * time.Second)
		tr.carrierChanged(true, now)
		holds = append(holds, tr.hold)
	}
	want := []time.Duration{0, 5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	if !slices.Equal(holds, want) {
		t.Errorf("hold-downs %v, want %v", holds, want)
	}
	// A single fall, a minute after the previous one, is no flap.
	tr2 := newTracker(defaultProbe(1), t0)
	tr2.carrierChanged(false, t0)
	tr2.carrierChanged(true, t0.Add(time.Second))
	tr2.carrierChanged(false, t0.Add(flapWindow+2*time.Second))
	if tr2.hold != 0 {
		t.Errorf("hold-down %s after two falls a minute apart", tr2.hold)
	}
}

// TestTrackerTimeoutDerivation: a blackhole on a fast link is still judged
// at the configured timeout; answers up to 4 x degraded_rtt prove a slow
// link alive.
func TestTrackerTimeoutDerivation(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	feed(tr, good(2*time.Millisecond))
	if got := tr.roundTimeout(); got != 300*time.Millisecond {
		t.Errorf("round timeout %s on a fast link, want the configured 300ms", got)
	}
	if got := tr.lateLimit(); got != time.Second {
		t.Errorf("late limit %s, want 4 x degraded_rtt = 1s", got)
	}
	p := defaultProbe(1)
	p.Timeout = 2 * time.Second
	if got := newTracker(p, t0).lateLimit(); got != 2*time.Second {
		t.Errorf("late limit %s with a timeout set above it, want the timeout", got)
	}
}

// TestTrackerSlowLinkIsDegradedNotOffline: latency jumps to 300 ms (over
// the 300 ms timeout). Rounds time out, but their answers come late: the
// link must be degraded, never offline.
func TestTrackerSlowLinkIsDegradedNotOffline(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	now := t0
	feed(tr, good(2*time.Millisecond))
	const rtt = 310 * time.Millisecond
	for range 50 {
		now = now.Add(200 * time.Millisecond)
		r := good(rtt)
		if rtt > tr.roundTimeout() {
			r = failed() // the round ended before the answers...
			tr.round(r, now)
			tr.late(rtt) // ...which came just after
		} else {
			tr.round(r, now)
		}
		if tr.state == StateOffline {
			t.Fatalf("slow link offline: %s", tr.reason)
		}
	}
	if tr.state != StateDegraded {
		t.Fatalf("state %s with a 310ms RTT, want degraded (%s)", tr.state, tr.reason)
	}
	if to := tr.roundTimeout(); to < 2*rtt {
		t.Errorf("round timeout %s, want it grown to twice the RTT", to)
	}
}

// slowProber answers after a fixed delay.
type slowProber struct{ delay time.Duration }

func (p slowProber) probe(ctx context.Context, _ netip.Addr) (time.Duration, error) {
	select {
	case <-time.After(p.delay):
		return p.delay, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
func (slowProber) close() error { return nil }

func TestRunRoundHandsLateAnswersOver(t *testing.T) {
	p := defaultProbe(3)
	const delay = 400 * time.Millisecond
	var mu sync.Mutex
	var late []time.Duration
	start := time.Now()
	r := runRound(context.Background(), slowProber{delay}, p, 1, start, 20*time.Millisecond, 2*time.Second,
		func(d time.Duration) { mu.Lock(); late = append(late, d); mu.Unlock() })
	// The round ends at its timeout, before the answers (the bound is
	// loose: a loaded machine schedules late).
	if took := time.Since(start); took >= delay {
		t.Errorf("round took %s: it must end at its timeout, not wait for the answers", took)
	}
	if r.Answered != 0 || len(r.PerTarget) != 3 {
		t.Errorf("round %+v", r)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(late)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(late) != 1 || late[0] != delay {
		t.Errorf("late answers %v, want one sample of %s", late, delay)
	}
}

func TestStandbyBackupIsProbedSlowly(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	renater, backup := m.link("renater"), m.link("backup")
	backup.cfg.Probe.StandbyInterval = 10 * time.Second
	m.roundDone(renater, good(time.Millisecond))
	m.mu.Lock()
	standby := m.standby(backup)
	m.mu.Unlock()
	if !standby {
		t.Fatal("backup not in standby while renater is online")
	}
	if _, _, ok := m.launchRound(backup); !ok {
		t.Fatal("first round of a standby link not launched")
	}
	if _, _, ok := m.launchRound(backup); ok {
		t.Fatal("standby link probed again before its standby interval")
	}
	backup.lastLaunch = t0.Add(-10 * time.Second) // the clock is fixed at t0
	if _, _, ok := m.launchRound(backup); !ok {
		t.Fatal("standby link not probed after its standby interval")
	}
	// Renater fails one round: the primary is in doubt, full rate.
	m.roundDone(renater, failed())
	if _, _, ok := m.launchRound(backup); !ok {
		t.Fatal("backup still slow while renater fails its rounds")
	}
	m.roundDone(renater, good(time.Millisecond))
	m.mu.Lock()
	standby = m.standby(backup)
	m.mu.Unlock()
	if !standby {
		t.Error("backup not back to standby once renater passes again")
	}
	// Renater offline: the backup carries traffic, full rate.
	for range 3 {
		m.roundDone(renater, failed())
	}
	m.mu.Lock()
	standby = m.standby(backup)
	m.mu.Unlock()
	if standby {
		t.Error("backup in standby while it carries traffic")
	}
	// The primary itself is never a standby.
	m.mu.Lock()
	standby = m.standby(renater)
	m.mu.Unlock()
	if standby {
		t.Error("renater in standby")
	}
}

// TestProbeOnlyFailureKeepsConnections: the probe targets alone are
// unreachable; the link still receives traffic, so new flows move but its
// connections are not deleted, until the traffic stops.
func TestProbeOnlyFailureKeepsConnections(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	renater := m.link("renater")
	for range 3 {
		fs.addRx("wan0", 80) // 100 packets/s of school traffic
		m.roundDone(renater, failed())
	}
	got := fs.take()
	if !slices.Equal(got, []string{"active 100.64.1.1/1"}) {
		t.Fatalf("probe-only failure: calls %q; want the switch and no flush", got)
	}
	ev := m.Events()
	if msg := ev[len(ev)-2].Message; !strings.Contains(msg, "connections are kept") {
		t.Errorf("state event %q does not say the connections are kept", msg)
	}
	for range 3 {
		fs.addRx("wan0", 80)
		m.roundDone(renater, failed())
	}
	if got := fs.take(); len(got) != 0 {
		t.Fatalf("traffic still flows: calls %q", got)
	}
	for range 3 {
		m.roundDone(renater, failed()) // no traffic any more
	}
	if got := fs.take(); !slices.Equal(got, []string{"flush 0x100 192.0.2.2"}) {
		t.Fatalf("traffic stopped: calls %q; want the connections deleted", got)
	}
}

func TestBlackholeStillFlushes(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	renater := m.link("renater")
	fs.addRx("wan0", 2) // an ARP exchange
	for range 3 {
		m.roundDone(renater, failed())
	}
	if got := fs.take(); !slices.Equal(got, []string{"active 100.64.1.1/1", "flush 0x100 192.0.2.2"}) {
		t.Fatalf("blackhole: calls %q; want the switch and the flush", got)
	}
}

func TestDegradedPrimaryWarnings(t *testing.T) {
	m, fs, h, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	fs.take()
	renater := m.link("renater")
	m.roundDone(m.link("backup"), good(time.Millisecond))
	for range 10 {
		m.roundDone(renater, good(400*time.Millisecond))
	}
	if st := renater.tr.state; st != StateDegraded {
		t.Fatalf("renater %s", st)
	}
	w, ok := h.Get("uplink-backup-in-use")
	if !ok {
		t.Fatal("no backup-in-use warning")
	}
	if !strings.Contains(w.Message, "because renater is degraded (it has a round-trip time of 400ms") {
		t.Errorf("backup-in-use warning %q does not name renater and why", w.Message)
	}
	if w, ok := h.Get("uplink-degraded:renater"); !ok || !strings.Contains(w.Message, "Uplink renater is degraded") {
		t.Errorf("degraded warning %+v, %v", w, ok)
	}
	if got := fs.take(); slices.Contains(got, "flush 0x100 192.0.2.2") {
		t.Errorf("degraded renater flushed: %q", got)
	}
}

func TestDNSFailureDegradesTheLink(t *testing.T) {
	m, fs, h, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	renater, backup := m.link("renater"), m.link("backup")
	m.roundDone(renater, good(time.Millisecond))
	m.roundDone(backup, good(time.Millisecond))
	fs.take()
	for range dnsDownAfter - 1 {
		m.dnsDone(renater, false, "no DNS upstream answered")
	}
	if renater.tr.state != StateOnline {
		t.Fatalf("degraded after %d failed DNS checks", dnsDownAfter-1)
	}
	m.dnsDone(renater, false, "no DNS upstream answered")
	if renater.tr.state != StateDegraded {
		t.Fatalf("state %s after %d failed DNS checks", renater.tr.state, dnsDownAfter)
	}
	if got := fs.take(); !slices.Equal(got, []string{"active 100.64.1.1/1"}) {
		t.Errorf("calls %q; want the switch to the backup, no flush", got)
	}
	if w, _ := h.Get("uplink-degraded:renater"); !strings.Contains(w.Message, "not DNS") {
		t.Errorf("warning %q", w.Message)
	}
	for range dnsUpAfter {
		m.dnsDone(renater, true, "")
	}
	if renater.tr.state != StateOnline {
		t.Fatalf("state %s after DNS came back", renater.tr.state)
	}
}

func TestCheckDNSOneAnswerIsEnough(t *testing.T) {
	fs := &fakeSystem{}
	servers := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}
	if i, _ := checkDNS(context.Background(), fs, Link{}, servers); i != 0 {
		t.Error("check failed with a server answering")
	}
	fs.mu.Lock() // the first check's second query may still run
	fs.dnsErr = errors.New("refused")
	fs.mu.Unlock()
	i, why := checkDNS(context.Background(), fs, Link{}, servers)
	if i >= 0 || !strings.Contains(why, "192.0.2.53:53") || !strings.Contains(why, "refused") {
		t.Errorf("check %v, %q", i, why)
	}
}

// TestCarrierBackResolvesTheGateway: after a total outage the backup's
// gateway is resolved as its carrier comes back, before the routes move.
func TestCarrierBackResolvesTheGateway(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	m.carrierChanged("wan0", true, 2)
	m.carrierChanged("wan1", true, 3)
	m.carrierChanged("wan0", false, 2)
	m.carrierChanged("wan1", false, 3)
	fs.take()
	m.carrierChanged("wan1", true, 3)
	got := fs.take()
	if len(got) < 3 || got[0] != "resolve wan1 100.64.1.1" || !slices.Contains(got, "active 100.64.1.1/1") {
		t.Fatalf("backup's carrier back: calls %q; want its gateway resolved, then the route on it (fallback)", got)
	}
}

// TestKeptConnectionsGoWithTheCarrier: an uplink offline by its probes
// whose connections were kept for their traffic loses its carrier: they
// are deleted then.
func TestKeptConnectionsGoWithTheCarrier(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	renater := m.link("renater")
	m.carrierChanged("wan0", true, 2)
	fs.take()
	for range 3 {
		fs.addRx("wan0", 50)
		m.roundDone(renater, failed())
	}
	if !renater.keep {
		t.Fatal("connections not kept")
	}
	fs.take()
	m.carrierChanged("wan0", false, 2)
	if got := fs.take(); !slices.Contains(got, "flush 0x100 192.0.2.2") {
		t.Fatalf("carrier lost: calls %q; want the kept connections deleted", got)
	}
	if renater.keep {
		t.Error("still keeping connections without carrier")
	}
}

// TestFirstLinkBackCarriesTrafficAtOnce: both uplinks offline by their
// probes; the backup's first good round makes it the fallback (its
// up_after rounds still decide when it is online), and renater's dead
// connections go.
func TestFirstLinkBackCarriesTrafficAtOnce(t *testing.T) {
	m, fs, _, _ := newTestManager(t)
	m.leaseChanged(m.link("backup"), 0, nil, dhcpLease)
	renater, backup := m.link("renater"), m.link("backup")
	for range 3 {
		m.roundDone(renater, failed())
		m.roundDone(backup, failed())
	}
	fs.take()
	m.roundDone(backup, good(time.Millisecond))
	got := fs.take()
	if !slices.Contains(got, "active 100.64.1.1/1") || !slices.Contains(got, "flush 0x100 192.0.2.2") {
		t.Fatalf("backup answers again: calls %q; want traffic on it and renater's connections deleted", got)
	}
	if backup.tr.state != StateOffline {
		t.Errorf("backup %s after one good round", backup.tr.state)
	}
	// It fails again: the fallback goes back to the preferred link.
	m.roundDone(backup, failed())
	if got := fs.take(); !slices.Contains(got, "active 192.0.2.1/1") {
		t.Fatalf("backup fails again: calls %q", got)
	}
}
