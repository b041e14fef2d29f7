package health

import (
	"testing"
	"time"
)

func TestRaiseKeepsSinceAndClearRemoves(t *testing.T) {
	now := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	r := New(func() time.Time { return now })
	r.Raise("uplinks", "uplink-down:renater", Warn, "Renater is down; the 4G backup carries the traffic")
	now = now.Add(time.Minute)
	r.Raise("uplinks", "uplink-down:renater", Critical, "Renater and the backup are down")
	w, ok := r.Get("uplink-down:renater")
	if !ok || w.Severity != Critical || !w.Since.Equal(now.Add(-time.Minute)) {
		t.Fatalf("got %+v, want critical since the first raise", w)
	}
	r.Clear("uplink-down:renater")
	r.Clear("never-raised")
	if len(r.List()) != 0 {
		t.Fatalf("List() = %v after Clear", r.List())
	}
}

func TestListOrdersBySeverityThenAge(t *testing.T) {
	now := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	r := New(func() time.Time { now = now.Add(time.Second); return now })
	r.Raise("dhcp", "pool-full:peda", Warn, "a")
	r.Raise("boot", "perm-reformatted", Critical, "b")
	r.Raise("dns", "lists-old", Warn, "c")
	r.Raise("time", "ntp-info", Info, "d")
	var got []string
	for _, w := range r.List() {
		got = append(got, w.Code)
	}
	want := []string{"perm-reformatted", "pool-full:peda", "lists-old", "ntp-info"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}
}

func TestWatchSignalsChanges(t *testing.T) {
	r := New(nil)
	ch, stop := r.Watch()
	defer stop()
	r.Raise("x", "a", Info, "m")
	select {
	case <-ch:
	default:
		t.Fatal("no signal after Raise")
	}
	r.Raise("x", "a", Info, "m") // no change, no signal
	select {
	case <-ch:
		t.Fatal("signal without a change")
	default:
	}
}
