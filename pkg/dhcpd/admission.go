package dhcpd

import "time"

// Budget bounds how many new clients (hardware addresses the zone has no
// record, offer or reservation of) a zone takes on per minute: the defence
// against DHCP starvation by random hardware addresses (issue 12), where one
// device sending 20 DISCOVERs a second from a new address each would
// otherwise take a /24's whole pool in 12 seconds.
//
// Within the budget, new clients are served at once. Beyond it the zone is
// under a flood: until no new client has been refused for FloodQuiet, a new
// client's first DISCOVER or REQUEST is ignored, and served only when it
// retries (every DHCP client does, after about 4 s: RFC 2131 4.1), at
// RetriesPerMinute at most. Flood tools use a new address per packet and
// never retry, so they get nothing more while a real device is served
// within seconds. Known clients (renewals, returning devices, reservations)
// are never counted nor refused.
type Budget struct {
	NewPerMinute     float64 // steady rate of new clients
	NewBurst         float64 // new clients at once (a class switching on its tablets)
	RetriesPerMinute float64 // retrying new clients served under a flood
	RetryBurst       float64
	FloodQuiet       time.Duration // a flood ends after this long without a refused new client
}

// DefaultBudget lets a class of new devices (60) arrive at once and 30 more
// a minute: a school's devices are mostly known ones coming back, so even
// the first morning of the year stays within it. A flood of random
// addresses gets at most about 60 addresses of a /24's 243, each for a
// first lease of 10 minutes.
var DefaultBudget = Budget{NewPerMinute: 30, NewBurst: 60, RetriesPerMinute: 20, RetryBurst: 10, FloodQuiet: time.Minute}

// Retries of a refused new client count from retryMinGap after its first
// packet (a flood tool repeating a packet at once is no retry) until
// retryWindow.
const (
	retryMinGap = time.Second
	retryWindow = 2 * time.Minute
	// admitWindow is how long an admitted new client is not counted again
	// (its REQUEST after a lost OFFER, its retries).
	admitWindow = time.Minute
	// maxWaiting bounds the refused clients remembered for their retry.
	maxWaiting = 4096
)

// admission is a zone's new-client budget. It is not safe for concurrent
// use; the Handler serialises access.
type admission struct {
	b        Budget
	tokens   bucket
	retries  bucket
	waiting  map[[6]byte]time.Time // refused new clients, first refusal
	admitted map[[6]byte]time.Time // new clients admitted, when

	// floodUntil is when the current flood ends if no new client is
	// refused meanwhile; floodStart when it began; refused counts the
	// clients refused since.
	floodStart, floodUntil time.Time
	refused                int
}

func newAdmission(b Budget) *admission {
	return &admission{b: b, waiting: map[[6]byte]time.Time{}, admitted: map[[6]byte]time.Time{}}
}

// admit decides for a client the table does not know. started reports that
// this refusal began a flood.
func (a *admission) admit(mac [6]byte, now time.Time) (ok, started bool) {
	if t, ok := a.admitted[mac]; ok && now.Sub(t) < admitWindow {
		return true, false
	}
	flood := now.Before(a.floodUntil)
	if !flood && a.tokens.take(now, a.b.NewPerMinute/60, a.b.NewBurst) {
		a.remember(a.admitted, mac, now, admitWindow)
		return true, false
	}
	if first, ok := a.waiting[mac]; ok {
		if age := now.Sub(first); age >= retryMinGap && age < retryWindow && a.retries.take(now, a.b.RetriesPerMinute/60, a.b.RetryBurst) {
			delete(a.waiting, mac)
			a.remember(a.admitted, mac, now, admitWindow)
			return true, false
		}
	} else {
		a.remember(a.waiting, mac, now, retryWindow)
	}
	if !flood {
		a.floodStart, a.refused = now, 0
	}
	a.refused++
	a.floodUntil = now.Add(a.b.FloodQuiet)
	return false, !flood
}

// flooded reports whether a flood is going on, since when and how many new
// clients it has seen refused.
func (a *admission) flooded(now time.Time) (since time.Time, refused int, on bool) {
	if !now.Before(a.floodUntil) {
		return time.Time{}, 0, false
	}
	return a.floodStart, a.refused, true
}

// remember adds mac to m, keeping m bounded: entries older than ttl go
// first, and if a flood keeps them all young, all go (a real client
// retries again).
func (a *admission) remember(m map[[6]byte]time.Time, mac [6]byte, now time.Time, ttl time.Duration) {
	if len(m) >= maxWaiting {
		for k, t := range m {
			if now.Sub(t) >= ttl {
				delete(m, k)
			}
		}
		if len(m) >= maxWaiting {
			clear(m)
		}
	}
	m[mac] = now
}
