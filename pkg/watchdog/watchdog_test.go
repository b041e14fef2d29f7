package watchdog

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

type fakeDevice struct {
	kicks    int
	disarmed bool
}

func (f *fakeDevice) Kick() error   { f.kicks++; return nil }
func (f *fakeDevice) Disarm() error { f.disarmed = true; return nil }

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }

func TestKicksOnlyWhileEveryHeartBeats(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)}
	dev := &fakeDevice{}
	w := New(slog.New(slog.DiscardHandler), dev, c.now, 5*time.Second)
	main := w.Heart("main loop", 10*time.Second)
	dns := w.Heart("dns", 30*time.Second)

	steps := []struct {
		advance time.Duration
		beat    []*Heart
		kick    bool
	}{
		{0, nil, true},                            // just registered: alive
		{5 * time.Second, []*Heart{main}, true},   // both within limits
		{5 * time.Second, []*Heart{main}, true},   // dns silent 10s of 30s
		{15 * time.Second, []*Heart{main}, true},  // dns silent 25s
		{10 * time.Second, []*Heart{main}, false}, // dns silent 35s: hung
		{5 * time.Second, []*Heart{main}, false},  // still hung
		{0, []*Heart{dns}, true},                  // dns recovered
		{11 * time.Second, []*Heart{dns}, false},  // main loop silent 11s
		{0, []*Heart{main}, true},
	}
	want := 0
	for i, s := range steps {
		c.add(s.advance)
		for _, h := range s.beat {
			h.Beat()
		}
		if got := w.Tick(); got != s.kick {
			t.Fatalf("step %d: kicked = %v, want %v (%v)", i, got, s.kick, w.Healthy(c.now()))
		}
		if s.kick {
			want++
		}
		if dev.kicks != want {
			t.Fatalf("step %d: device kicked %d times, want %d", i, dev.kicks, want)
		}
	}
}

func TestFailingCheckStopsKicks(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)}
	dev := &fakeDevice{}
	w := New(slog.New(slog.DiscardHandler), dev, c.now, time.Second)
	var failed error
	w.Check("services", func() error { return failed })
	if !w.Tick() {
		t.Fatal("no kick while healthy")
	}
	failed = errors.New("critical services failed: [dns]")
	if w.Tick() {
		t.Fatal("kicked while a critical service is failed")
	}
	if err := w.Healthy(c.now()); err == nil || err.Error() != "services: critical services failed: [dns]" {
		t.Errorf("Healthy() = %v", err)
	}
}

func TestDisarmUsesMagicClose(t *testing.T) {
	dev := &fakeDevice{}
	w := New(slog.New(slog.DiscardHandler), dev, nil, time.Second)
	if err := w.Disarm(); err != nil || !dev.disarmed {
		t.Fatalf("Disarm() = %v, disarmed = %v", err, dev.disarmed)
	}
}
