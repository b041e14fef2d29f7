package dnsfilter

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// rateLimiter is a token bucket per client address: rate tokens per
// second, bursts up to one second's worth. Sharded so that one busy client
// does not serialise everyone.
type rateLimiter struct {
	now    func() time.Time
	rate   atomic.Int64
	seed   maphash.Seed
	shards [32]limiterShard
}

type limiterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

func newRateLimiter(now func() time.Time) *rateLimiter {
	l := &rateLimiter{now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[netip.Addr]*bucket{}
	}
	return l
}

func (l *rateLimiter) setRate(perSecond int) { l.rate.Store(int64(perSecond)) }

func (l *rateLimiter) shard(a netip.Addr) *limiterShard {
	b := a.As16()
	return &l.shards[maphash.Bytes(l.seed, b[:])%uint64(len(l.shards))]
}

// allow takes a token for a query from a; a zero rate allows everything.
func (l *rateLimiter) allow(a netip.Addr) bool {
	rate := float64(l.rate.Load())
	if rate <= 0 {
		return true
	}
	now := l.now().UnixNano()
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[a]
	if !ok {
		b = &bucket{tokens: rate, last: now}
		s.m[a] = b
	}
	b.tokens = min(rate, b.tokens+float64(now-b.last)/1e9*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets clients idle long enough for their bucket to be full.
func (l *rateLimiter) prune() {
	cutoff := l.now().Add(-2 * time.Second).UnixNano()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for a, b := range s.m {
			if b.last < cutoff {
				delete(s.m, a)
			}
		}
		s.mu.Unlock()
	}
}
