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

// The cache is bounded by bytes as well as entries (issue 12): 4,800
// names of an attacker's domain, each with a 60 KB answer, took the daemon
// from 114 to 777 MB when only entries were counted.
const (
	// DefaultCacheBytes is the cache's memory budget when the
	// configuration gives none: 3 % of a 1 GB board, room for over 100,000
	// typical answers (a few hundred bytes each, twice: parsed and wire).
	DefaultCacheBytes = 32 << 20
	// maxCachedAnswer is the largest answer kept, in wire format. Answers
	// to clients over UDP are at most 1232 bytes (the rest is truncated
	// and asked again over TCP); real answers above 8 KB are rare (large
	// TXT or DNSKEY sets) and cheap to ask again, while a few big ones
	// would crowd out thousands of ordinary ones. Larger answers are
	// served, not cached.
	maxCachedAnswer = 8 << 10
	// entryOverhead estimates what an entry costs beyond its bytes: the
	// map slot, the entry, the message header and question.
	entryOverhead = 256
	// rrOverhead estimates a parsed record's cost beyond its data (the
	// struct, its header, its name's string header).
	rrOverhead = 96
)

// entry is one cached answer. msg is never modified after insertion;
// readers copy it.
type entry struct {
	msg      *dns.Msg
	size     int         // estimated bytes held (entrySize)
	wire     *wireAnswer // msg encoded, nil if it could not be
	stored   time.Time
	expires  time.Time
	ttl      uint32 // TTL at storage, seconds
	hits     atomic.Uint32
	lastUsed atomic.Int64 // unix nanoseconds
	// prefetching is set while a refresh of this entry is in flight.
	prefetching atomic.Bool
}

// cache is a map of answers bounded in entries and bytes, sharded to keep
// lock contention low under load. Eviction is approximate LRU: when a
// shard is full, the least recently used of a few sampled entries goes
// (expired entries past their stale window first), as many times as the
// new entry needs.
type cache struct {
	seed     maphash.Seed
	shards   []cacheShard
	per      int // entries of one shard
	perBytes int // bytes of one shard
	size     atomic.Int64
	bytes    atomic.Int64
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*entry
	bytes int
}

// entrySize estimates the memory an answer holds in the cache: the wire
// form, the parsed records (about their wire size plus rrOverhead each),
// the key and entryOverhead.
func entrySize(key string, m *dns.Msg, w *wireAnswer) int {
	n := entryOverhead + len(key) + rrOverhead*(len(m.Answer)+len(m.Ns)+len(m.Extra))
	if w != nil {
		n += 2 * len(w.msg)
	} else {
		n += 2 * m.Len()
	}
	return n
}

const cacheShards = 64

func newCache(size, bytes int) *cache {
	if size <= 0 {
		return nil
	}
	if bytes <= 0 {
		bytes = DefaultCacheBytes
	}
	n := cacheShards
	if size < n || bytes < n*4*maxCachedAnswer {
		n = 1
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), per: (size + n - 1) / n, perBytes: bytes / n}
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
	if e.size > c.perBytes {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[key]; ok {
		c.remove(s, key, old)
	}
	for len(s.m) > 0 && (len(s.m) >= c.per || s.bytes+e.size > c.perBytes) {
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
		c.remove(s, victim, s.m[victim])
	}
	s.m[key] = e
	s.bytes += e.size
	c.size.Add(1)
	c.bytes.Add(int64(e.size))
}

// remove deletes an entry of s, whose lock is held.
func (c *cache) remove(s *cacheShard, key string, e *entry) {
	delete(s.m, key)
	s.bytes -= e.size
	c.size.Add(-1)
	c.bytes.Add(-int64(e.size))
}

// byteSize returns the estimated bytes the cache holds.
func (c *cache) byteSize() int64 {
	if c == nil {
		return 0
	}
	return c.bytes.Load()
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
