package uplink

import (
	"sync"
	"time"
)

// EventKind sorts events for the status page.
type EventKind string

const (
	EventState  EventKind = "state"  // an uplink went online, degraded or offline
	EventSwitch EventKind = "switch" // new flows now use other uplinks
	EventLease  EventKind = "lease"  // a DHCP uplink got, changed or lost its address
	// EventDamping: an uplink flaps and is held down longer, or is
	// stable again.
	EventDamping EventKind = "damping"
	// EventTarget: a probe target stopped answering while the others
	// answer, or answers again.
	EventTarget EventKind = "target"
)

// Event is one thing that happened to the uplinks, said in plain words for
// the technicians' status page, e.g. "switched to backup4g at 10:42:
// renater lost 3 probe rounds in a row".
type Event struct {
	Time    time.Time
	Kind    EventKind
	Uplink  string // the uplink concerned; for a switch, the one now used
	Message string
}

// DefaultEventLogSize is how many events the manager keeps.
const DefaultEventLogSize = 200

// eventLog keeps the last events in memory: bounded, so a flapping link
// cannot grow it, and lost at reboot, which the status page says.
type eventLog struct {
	mu   sync.Mutex
	buf  []Event
	next int // where the next event goes once buf is full
	full bool
}

func newEventLog(size int) *eventLog {
	if size <= 0 {
		size = DefaultEventLogSize
	}
	return &eventLog{buf: make([]Event, 0, size)}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		l.buf = append(l.buf, e)
		if len(l.buf) == cap(l.buf) {
			l.full = true
		}
		return
	}
	l.buf[l.next] = e
	l.next = (l.next + 1) % len(l.buf)
}

// list returns the events, oldest first.
func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, 0, len(l.buf))
	out = append(out, l.buf[l.next:]...)
	return append(out, l.buf[:l.next]...)
}
