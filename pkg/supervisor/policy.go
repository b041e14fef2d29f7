package supervisor

import (
	"fmt"
	"time"
)

// DoNotRestart is the exit code by which a child says it exited on purpose
// and must not be started again (a one-shot job, a feature switched off).
// gokrazy uses the same convention and value.
const DoNotRestart = 125

// Policy says how services are restarted. The zero value is not useful:
// start from DefaultPolicy.
type Policy struct {
	// BackoffBase is the delay before the first restart; each further
	// restart doubles it up to BackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// StableAfter is how long a service must run for its backoff to go
	// back to BackoffBase (and for a failed service retried after
	// FailedRetry to count as healthy again).
	StableAfter time.Duration
	// CrashLoopExits exits within CrashLoopWindow mark a service failed.
	CrashLoopExits  int
	CrashLoopWindow time.Duration
	// FailedRetry is how long a failed service waits before one more try.
	FailedRetry time.Duration
	// StopTimeout is how long a stopping service gets between SIGTERM (or
	// its context being cancelled) and SIGKILL.
	StopTimeout time.Duration
	// ReadyTimeout bounds the wait for a service's readiness before the
	// next one in the start order is started anyway.
	ReadyTimeout time.Duration
}

// DefaultPolicy is the production policy: 1 s doubling to 60 s, reset
// after a minute of stable running, failed after 5 exits in 10 minutes and
// retried every 10 minutes.
func DefaultPolicy() Policy {
	return Policy{
		BackoffBase:     time.Second,
		BackoffMax:      time.Minute,
		StableAfter:     time.Minute,
		CrashLoopExits:  5,
		CrashLoopWindow: 10 * time.Minute,
		FailedRetry:     10 * time.Minute,
		StopTimeout:     10 * time.Second,
		ReadyTimeout:    30 * time.Second,
	}
}

// Validate reports a policy that would misbehave (a zero backoff spinning
// the CPU, a crash-loop threshold that can never trigger).
func (p Policy) Validate() error {
	switch {
	case p.BackoffBase <= 0:
		return fmt.Errorf("backoff base %s: must be positive", p.BackoffBase)
	case p.BackoffMax < p.BackoffBase:
		return fmt.Errorf("backoff max %s: must be at least the base %s", p.BackoffMax, p.BackoffBase)
	case p.StableAfter <= 0:
		return fmt.Errorf("stable period %s: must be positive", p.StableAfter)
	case p.CrashLoopExits < 2:
		return fmt.Errorf("crash-loop exits %d: must be at least 2", p.CrashLoopExits)
	case p.CrashLoopWindow <= 0:
		return fmt.Errorf("crash-loop window %s: must be positive", p.CrashLoopWindow)
	case p.FailedRetry <= 0:
		return fmt.Errorf("failed retry %s: must be positive", p.FailedRetry)
	case p.StopTimeout <= 0:
		return fmt.Errorf("stop timeout %s: must be positive", p.StopTimeout)
	case p.ReadyTimeout <= 0:
		return fmt.Errorf("ready timeout %s: must be positive", p.ReadyTimeout)
	}
	return nil
}

// Action is what to do after a service exited.
type Action int

const (
	// Restart after Decision.After.
	Restart Action = iota
	// Fail: the service is crash-looping; try again after Decision.After.
	Fail
	// Done: do not start the service again (it asked, or it finished).
	Done
)

func (a Action) String() string {
	switch a {
	case Restart:
		return "restart"
	case Fail:
		return "fail"
	case Done:
		return "done"
	}
	return "unknown"
}

// Decision is the policy's answer to one exit.
type Decision struct {
	Action Action
	After  time.Duration
	Reason string
}

// history is one service's restart state. It is pure: every method takes
// the current time, so tests drive it with a fake clock.
type history struct {
	p        Policy
	delay    time.Duration // next restart delay
	exits    []time.Time   // exits inside the crash-loop window
	retrying bool          // started again after being failed
}

func newHistory(p Policy) *history { return &history{p: p, delay: p.BackoffBase} }

// exited records an exit at now of a run that started at started.
// code is the exit code, or -1 for an internal service's error or a
// signal.
func (h *history) exited(now, started time.Time, code int) Decision {
	ran := now.Sub(started)
	if code == DoNotRestart {
		return Decision{Action: Done, Reason: fmt.Sprintf("exit code %d: asked not to be restarted", DoNotRestart)}
	}
	stable := ran >= h.p.StableAfter
	if stable {
		h.delay = h.p.BackoffBase
		h.retrying = false
	}
	// The crash-loop window slides: only exits within the last
	// CrashLoopWindow count, however long each run lasted.
	cut := now.Add(-h.p.CrashLoopWindow)
	kept := h.exits[:0]
	for _, t := range h.exits {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	h.exits = append(kept, now)
	if h.retrying {
		// A failed service gets one try per FailedRetry: a quick exit
		// sends it straight back to failed instead of a fresh burst of
		// restarts every ten minutes.
		return h.fail(fmt.Sprintf("exited again after %s on its retry", ran.Round(time.Millisecond)))
	}
	if len(h.exits) >= h.p.CrashLoopExits {
		return h.fail(fmt.Sprintf("%d exits within %s", len(h.exits), h.p.CrashLoopWindow))
	}
	d := Decision{Action: Restart, After: h.delay, Reason: fmt.Sprintf("exited after %s", ran.Round(time.Millisecond))}
	h.delay = min(2*h.delay, h.p.BackoffMax)
	return d
}

func (h *history) fail(reason string) Decision {
	h.exits = h.exits[:0]
	h.delay = h.p.BackoffBase
	h.retrying = true
	return Decision{Action: Fail, After: h.p.FailedRetry, Reason: reason}
}

// stableAt returns when a run that started at started counts as stable:
// from then on a failed service is healthy again.
func (h *history) stableAt(started time.Time) time.Time { return started.Add(h.p.StableAfter) }

// markStable is called when a run reached stableAt while still running.
func (h *history) markStable() {
	h.delay = h.p.BackoffBase
	h.retrying = false
}
