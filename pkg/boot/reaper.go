package boot

import (
	"sync"
	"time"
)

// procEntry is a process as the reaper sees it in /proc.
type procEntry struct {
	pid, ppid int
	state     byte
}

// reapState decides which zombies PID 1 reaps. As PID 1 the daemon
// inherits every orphan, but it also has children of its own that someone
// waits for: the supervisor's (tracked: never touched) and any os/exec
// command (waited by Go's os package in waitid, which reaps them as soon
// as they exit). Reaping one of those first would make its Wait fail
// with ECHILD. So the reaper takes only zombies that nobody tracks and
// that stayed zombies for a grace period: an own child with a waiter
// never does.
type reapState struct {
	grace   time.Duration
	tracked map[int]bool
	seen    map[int]time.Time // zombie -> first seen
}

func newReapState(grace time.Duration) *reapState {
	return &reapState{grace: grace, tracked: map[int]bool{}, seen: map[int]time.Time{}}
}

// due returns the zombie children of self to reap now, and whether some
// are waiting for their grace period to end.
func (r *reapState) due(self int, procs []procEntry, now time.Time) (reap []int, pending bool) {
	current := map[int]bool{}
	for _, p := range procs {
		if p.ppid != self || p.state != 'Z' || r.tracked[p.pid] {
			continue
		}
		current[p.pid] = true
		first, ok := r.seen[p.pid]
		if !ok {
			r.seen[p.pid] = now
			first = now
		}
		if now.Sub(first) >= r.grace {
			reap = append(reap, p.pid)
		} else {
			pending = true
		}
	}
	// Forget zombies that are gone (waited by their owner).
	for pid := range r.seen {
		if !current[pid] {
			delete(r.seen, pid)
		}
	}
	return reap, pending
}

func (r *reapState) reaped(pid int) { delete(r.seen, pid) }

// Reaper reaps orphans when the daemon is PID 1. It implements the
// supervisor's Tracker.
type Reaper struct {
	mu    sync.Mutex
	state *reapState
}

// Track marks pid as waited for by its owner.
func (r *Reaper) Track(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.tracked[pid] = true
}

// Untrack forgets pid once its owner has waited for it.
func (r *Reaper) Untrack(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state.tracked, pid)
}
