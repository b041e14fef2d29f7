package uplink

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 28, 10, 42, 0, 0, time.UTC)

// defaultProbe is the config's default probing, with one target as in the
// lab (the worst case for flapping: no quorum to absorb a loss).
func defaultProbe(targets int) Probe {
	p := Probe{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond, DownAfter: 3, UpAfter: 5,
		DegradedRTT: 250 * time.Millisecond, DegradedLoss: 20, Quorum: targets/2 + 1}
	for i := range targets {
		p.Targets = append(p.Targets, netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}))
	}
	return p
}

func good(rtt time.Duration) Round { return Round{Sent: 2, Answered: 2, TargetsUp: 1, RTT: rtt} }
func failed() Round                { return Round{Sent: 2} }
func feed(tr *tracker, rs ...Round) {
	for _, r := range rs {
		tr.round(r, t0)
	}
}

func TestTrackerHysteresis(t *testing.T) {
	tests := []struct {
		name   string
		rounds []Round
		want   State
	}{
		{"first good round: online", []Round{good(time.Millisecond)}, StateOnline},
		{"two failures are not enough", []Round{good(time.Millisecond), failed(), failed()}, StateOnline},
		{"three failures in a row: offline", []Round{good(time.Millisecond), failed(), failed(), failed()}, StateOffline},
		{"failures not in a row", []Round{good(0), failed(), failed(), good(0), failed(), failed()}, StateOnline},
		{"never answered: offline after three", []Round{failed(), failed(), failed()}, StateOffline},
		{"four good rounds do not bring it back", []Round{failed(), failed(), failed(), good(0), good(0), good(0), good(0)}, StateOffline},
		{"five good rounds do", []Round{failed(), failed(), failed(), good(0), good(0), good(0), good(0), good(0)}, StateOnline},
		{"a failure resets the count", []Round{failed(), failed(), failed(), good(0), good(0), good(0), good(0), failed(), good(0), good(0), good(0), good(0)}, StateOffline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(defaultProbe(1), t0)
			feed(tr, tt.rounds...)
			if tr.state != tt.want {
				t.Errorf("state %s, want %s (%s)", tr.state, tt.want, tr.reason)
			}
		})
	}
}

func TestTrackerQuorum(t *testing.T) {
	tr := newTracker(defaultProbe(3), t0)
	oneOfThree := Round{Sent: 6, Answered: 2, TargetsUp: 1}
	twoOfThree := Round{Sent: 6, Answered: 4, TargetsUp: 2}
	feed(tr, twoOfThree, oneOfThree, oneOfThree)
	if tr.state != StateOnline {
		t.Fatalf("state %s after two rounds below quorum", tr.state)
	}
	feed(tr, oneOfThree)
	if tr.state != StateOffline {
		t.Fatalf("state %s after three rounds with 1 of 3 targets (quorum 2)", tr.state)
	}
}

func TestTrackerCarrier(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	feed(tr, good(0))
	if !tr.carrierChanged(false, t0) || tr.state != StateOffline {
		t.Fatalf("carrier loss: state %s, want offline at once", tr.state)
	}
	feed(tr, good(0), good(0), good(0), good(0), good(0), good(0))
	if tr.state != StateOffline {
		t.Fatalf("rounds without carrier brought the link back (%s)", tr.state)
	}
	if tr.carrierChanged(true, t0) || tr.state != StateOffline {
		t.Fatalf("carrier back: state %s; it must wait for good rounds", tr.state)
	}
	feed(tr, good(0), good(0), good(0), good(0), good(0))
	if tr.state != StateOnline {
		t.Fatalf("state %s after carrier and up_after good rounds", tr.state)
	}
}

func TestTrackerDegradedByLatency(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	for range 10 {
		feed(tr, good(300*time.Millisecond))
	}
	if tr.state != StateDegraded {
		t.Fatalf("state %s with 300ms RTT (threshold 250ms)", tr.state)
	}
	for range 10 {
		feed(tr, good(220*time.Millisecond))
	}
	if tr.state != StateDegraded {
		t.Fatalf("state %s at 220ms: leaving degraded needs under 80%% of the threshold", tr.state)
	}
	for range 10 {
		feed(tr, good(50*time.Millisecond))
	}
	if tr.state != StateOnline {
		t.Fatalf("state %s at 50ms", tr.state)
	}
}

func TestTrackerDegradedByLoss(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	half := Round{Sent: 2, Answered: 1, TargetsUp: 1}
	for range lossMinRounds {
		feed(tr, half)
	}
	if tr.state != StateDegraded {
		t.Fatalf("state %s with 50%% loss", tr.state)
	}
	for range lossWindow {
		feed(tr, good(0))
	}
	if tr.state != StateOnline {
		t.Fatalf("state %s once the loss left the window", tr.state)
	}
}

func TestTrackerBackFromOutageIsNotDegraded(t *testing.T) {
	tr := newTracker(defaultProbe(1), t0)
	feed(tr, good(0))
	for range 50 {
		feed(tr, failed())
	}
	for range 5 {
		feed(tr, good(0))
	}
	if tr.state != StateOnline {
		t.Fatalf("state %s after an outage and 5 good rounds: the outage must not count as loss", tr.state)
	}
}

// TestTrackerRandomLossNoFlap simulates 60 s of rounds at the default
// settings on a line losing 5 % of packets each way (so ~9.75 % of echo
// exchanges), many times over: the state must never change.
func TestTrackerRandomLossNoFlap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	exchangeLost := func() bool {
		request, reply := rng.Float64() < 0.05, rng.Float64() < 0.05 // 5 % each way
		return request || reply
	}
	p := defaultProbe(1)
	rounds := int(60 * time.Second / p.Interval)
	for run := range 1000 {
		tr := newTracker(p, t0)
		feed(tr, good(time.Millisecond))
		for i := range rounds {
			r := Round{Sent: 2, RTT: time.Millisecond}
			for range 2 {
				if !exchangeLost() {
					r.Answered++
				}
			}
			if r.Answered > 0 {
				r.TargetsUp = 1
			}
			if tr.round(r, t0) {
				t.Fatalf("run %d, round %d: state changed to %s (%s)", run, i, tr.state, tr.reason)
			}
		}
	}
}
