package supervisor

import (
	"testing"
	"time"
)

// clock is a fake time source the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)} }
func (c *clock) run(h *history, ran time.Duration, code int) Decision {
	start := c.t
	c.add(ran)
	return h.exited(c.t, start, code)
}

func TestBackoffDoublesFromOneSecondToSixtySeconds(t *testing.T) {
	p := DefaultPolicy()
	p.CrashLoopExits = 1000 // look at the backoff alone
	h, c := newHistory(p), newClock()
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		d := c.run(h, 100*time.Millisecond, 1)
		if d.Action != Restart || d.After != w*time.Second {
			t.Fatalf("exit %d: got %v after %s, want restart after %ds", i+1, d.Action, d.After, w)
		}
		c.add(d.After)
	}
}

func TestBackoffResetsAfterStablePeriod(t *testing.T) {
	p := DefaultPolicy()
	p.CrashLoopExits = 1000 // look at the backoff alone
	h, c := newHistory(p), newClock()
	for range 3 {
		d := c.run(h, time.Second, 1)
		c.add(d.After)
	}
	// Runs longer than StableAfter: the next restart is quick again.
	if d := c.run(h, p.StableAfter, 1); d.Action != Restart || d.After != time.Second {
		t.Fatalf("after a stable run: %v after %s, want restart after 1s", d.Action, d.After)
	}
	if d := c.run(h, time.Second, 1); d.After != 2*time.Second {
		t.Fatalf("then: after %s, want 2s", d.After)
	}
}

func TestMarkStableResetsBackoffWhileRunning(t *testing.T) {
	p := DefaultPolicy()
	p.CrashLoopExits = 1000 // look at the backoff alone
	h, c := newHistory(p), newClock()
	for range 4 {
		c.add(c.run(h, time.Second, 1).After)
	}
	h.markStable()
	if d := c.run(h, time.Second, 1); d.After != time.Second {
		t.Fatalf("after markStable: restart after %s, want 1s", d.After)
	}
}

func TestCrashLoopFiveExitsInTenMinutesMarksFailed(t *testing.T) {
	p := DefaultPolicy()
	h, c := newHistory(p), newClock()
	for i := 1; i <= 4; i++ {
		d := c.run(h, time.Second, 1)
		if d.Action != Restart {
			t.Fatalf("exit %d: %v, want restart", i, d.Action)
		}
		c.add(d.After)
	}
	d := c.run(h, time.Second, 1)
	if d.Action != Fail || d.After != 10*time.Minute {
		t.Fatalf("5th exit: %v after %s, want fail, retry after 10m", d.Action, d.After)
	}
}

func TestExitsSpreadBeyondTheWindowDoNotFail(t *testing.T) {
	p := DefaultPolicy()
	h, c := newHistory(p), newClock()
	// One exit every 3 minutes after 3 minutes of running: never 5 in 10
	// minutes.
	for i := range 20 {
		d := c.run(h, 3*time.Minute, 1)
		if d.Action != Restart {
			t.Fatalf("exit %d at %s: %v (%s), want restart", i+1, c.t.Format(time.TimeOnly), d.Action, d.Reason)
		}
		c.add(d.After)
	}
}

func TestFailedServiceRetriesOnceThenFailsAgainOrRecovers(t *testing.T) {
	p := DefaultPolicy()
	h, c := newHistory(p), newClock()
	for range 5 {
		c.add(c.run(h, time.Second, 1).After)
	}
	// The retry exits quickly: failed again at once, no new burst.
	if d := c.run(h, 2*time.Second, 1); d.Action != Fail || d.After != p.FailedRetry {
		t.Fatalf("quick exit on retry: %v after %s, want fail after %s", d.Action, d.After, p.FailedRetry)
	}
	c.add(p.FailedRetry)
	// This retry runs past the stable period, then exits: an ordinary
	// restart with the base delay.
	if d := c.run(h, p.StableAfter+time.Second, 1); d.Action != Restart || d.After != p.BackoffBase {
		t.Fatalf("exit after a stable retry: %v after %s, want restart after %s", d.Action, d.After, p.BackoffBase)
	}
}

func TestDoNotRestartExitCode(t *testing.T) {
	h, c := newHistory(DefaultPolicy()), newClock()
	if d := c.run(h, time.Millisecond, DoNotRestart); d.Action != Done {
		t.Fatalf("exit %d: %v, want done", DoNotRestart, d.Action)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Policy)
	}{
		{"zero base", func(p *Policy) { p.BackoffBase = 0 }},
		{"max below base", func(p *Policy) { p.BackoffMax = p.BackoffBase / 2 }},
		{"one exit is a loop", func(p *Policy) { p.CrashLoopExits = 1 }},
		{"no window", func(p *Policy) { p.CrashLoopWindow = 0 }},
		{"no retry", func(p *Policy) { p.FailedRetry = 0 }},
		{"no stop timeout", func(p *Policy) { p.StopTimeout = 0 }},
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.edit(&p)
			if p.Validate() == nil {
				t.Errorf("%+v accepted", p)
			}
		})
	}
}
