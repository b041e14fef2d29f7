package dhcpd

import "time"

// Limits bound how many packets a zone's server handles.
type Limits struct {
	ClientRate  float64 // packets per second from one hardware address
	ClientBurst float64
	ZoneRate    float64 // packets per second in the whole zone
	ZoneBurst   float64
}

// DefaultLimits let a client do a few exchanges in a row (a DORA with
// retries is 2 to 6 packets) and a whole school boot at once, while a flood
// from one hardware address costs the others nothing.
var DefaultLimits = Limits{ClientRate: 1, ClientBurst: 8, ZoneRate: 500, ZoneBurst: 1000}

// maxTrackedClients bounds the limiter's memory under a flood of random
// hardware addresses; those are also bounded by the zone limit.
const maxTrackedClients = 4096

type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst, b.tokens+dt*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// limiter is a token bucket per client and one for the zone.
type limiter struct {
	limits  Limits
	zone    bucket
	clients map[[6]byte]*bucket
}

func newLimiter(l Limits) *limiter {
	return &limiter{limits: l, clients: map[[6]byte]*bucket{}}
}

func (l *limiter) allowZone(now time.Time) bool {
	return l.zone.take(now, l.limits.ZoneRate, l.limits.ZoneBurst)
}

func (l *limiter) allowClient(mac [6]byte, now time.Time) bool {
	b, ok := l.clients[mac]
	if !ok {
		if len(l.clients) >= maxTrackedClients {
			l.sweep(now)
		}
		b = &bucket{}
		l.clients[mac] = b
	}
	return b.take(now, l.limits.ClientRate, l.limits.ClientBurst)
}

// sweep forgets clients whose bucket has refilled (they are as good as
// new); if a flood keeps them all busy, it forgets them all, which the zone
// limit makes harmless.
func (l *limiter) sweep(now time.Time) {
	full := time.Duration(l.limits.ClientBurst / l.limits.ClientRate * float64(time.Second))
	for mac, b := range l.clients {
		if now.Sub(b.last) >= full {
			delete(l.clients, mac)
		}
	}
	if len(l.clients) >= maxTrackedClients {
		clear(l.clients)
	}
}
