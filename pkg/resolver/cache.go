package resolver

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// staleFor is how long an expired answer may still be served when every
// upstream fails (RFC 8767 suggests one to three days).
const staleFor = 24 * time.Hour

// entry is one cached answer. msg is never modified after insertion;
// readers copy it.
type entry struct {
	msg      *dns.Msg
	wire     *wireAnswer // msg encoded, nil if it could not be
	stored   time.Time
	expires  time.Time
	ttl      uint32 // TTL at storage, seconds
	hits     atomic.Uint32
	lastUsed atomic.Int64 // unix nanoseconds
	// prefetching is set while a refresh of this entry is in flight.
	prefetching atomic.Bool
}

// cache is a size-bounded map of answers, sharded to keep lock
// contention low under load. Eviction is approximate LRU: when a shard is
// full, the least recently used of a few sampled entries goes (expired
// entries past their stale window first).
type cache struct {
	seed   maphash.Seed
	shards []cacheShard
	per    int // capacity of one shard
	size   atomic.Int64
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*entry
}

const cacheShards = 64

func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	n := cacheShards
	if size < n {
		n = 1
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), per: (size + n - 1) / n}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*entry)
	}
	return c
}

func (c *cache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

func (c *cache) get(key string) *entry {
	if c == nil {
		return nil
	}
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	return e
}

func (c *cache) put(key string, e *entry, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.per {
		var victim string
		var oldest int64
		n := 0
		for k, v := range s.m { // map order is random: a cheap sample
			if now.Sub(v.expires) > staleFor {
				victim = k
				break
			}
			if lu := v.lastUsed.Load(); victim == "" || lu < oldest {
				victim, oldest = k, lu
			}
			if n++; n == 8 {
				break
			}
		}
		delete(s.m, victim)
		c.size.Add(-1)
	}
	if _, ok := s.m[key]; !ok {
		c.size.Add(1)
	}
	s.m[key] = e
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	return int(c.size.Load())
}

// cacheKey identifies an answer: name (case-folded), type, class, and the
// DO and CD bits, which change what upstreams return.
func cacheKey(q dns.Question, do, cd bool) string {
	var b strings.Builder
	b.Grow(len(q.Name) + 6)
	for i := 0; i < len(q.Name); i++ {
		ch := q.Name[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b.WriteByte(ch)
	}
	flags := byte(0)
	if do {
		flags |= 1
	}
	if cd {
		flags |= 2
	}
	b.WriteByte(0)
	b.WriteByte(byte(q.Qtype >> 8))
	b.WriteByte(byte(q.Qtype))
	b.WriteByte(byte(q.Qclass >> 8))
	b.WriteByte(byte(q.Qclass))
	b.WriteByte(flags)
	return b.String()
}

// cacheTTL returns how long an upstream answer may be cached, clamped to
// [min, max], and whether it may be cached at all. Negative answers
// (NXDOMAIN, NODATA) are cached for the SOA's negative TTL (RFC 2308 §5:
// the smaller of the SOA record's TTL and its MINIMUM field) and not at all
// without a SOA.
func cacheTTL(m *dns.Msg, min, max time.Duration) (time.Duration, bool) {
	var ttl uint32
	found := false
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		for _, rr := range m.Answer {
			if t := rr.Header().Ttl; !found || t < ttl {
				ttl, found = t, true
			}
		}
	case m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = soa.Hdr.Ttl
				if soa.Minttl < ttl {
					ttl = soa.Minttl
				}
				found = true
				break
			}
		}
	}
	if !found {
		return 0, false
	}
	d := time.Duration(ttl) * time.Second
	if d < min {
		d = min
	}
	if d > max {
		d = max
	}
	return d, d > 0
}

// clampTTLs bounds every record's TTL (the OPT pseudo-record excepted).
func clampTTLs(m *dns.Msg, min, max time.Duration) {
	lo, hi := uint32(min/time.Second), uint32(max/time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl < lo {
				h.Ttl = lo
			}
			if h.Ttl > hi {
				h.Ttl = hi
			}
		}
	}
}

// answerFrom copies a cached message for one client: TTLs aged by the time
// spent in the cache (or set to staleTTL for a stale answer).
func answerFrom(e *entry, now time.Time, stale bool) *dns.Msg {
	age := uint32(now.Sub(e.stored) / time.Second)
	m := new(dns.Msg)
	m.MsgHdr = e.msg.MsgHdr
	m.Compress = true
	m.Question = append([]dns.Question(nil), e.msg.Question...)
	copyRRs := func(in []dns.RR) []dns.RR {
		if len(in) == 0 {
			return nil
		}
		out := make([]dns.RR, 0, len(in))
		for _, rr := range in {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			c := dns.Copy(rr)
			h := c.Header()
			switch {
			case stale:
				h.Ttl = staleTTL
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
			out = append(out, c)
		}
		return out
	}
	m.Answer = copyRRs(e.msg.Answer)
	m.Ns = copyRRs(e.msg.Ns)
	m.Extra = copyRRs(e.msg.Extra)
	return m
}

// staleTTL is the TTL of stale answers (RFC 8767 §4 recommends 30 s).
const staleTTL = 30
