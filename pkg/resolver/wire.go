package resolver

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// wireAnswer is a cached answer in wire format, for the server's fast
// path: copying bytes and patching the TTLs is several times cheaper than
// copying the message's records and encoding them again.
type wireAnswer struct {
	msg     []byte   // packed answer without OPT record, ID 0
	ttlOffs []uint16 // offsets of every record's TTL
	cnames  []string // CNAME targets in the answer, lower case, no trailing dot
}

// packWire encodes m for the cache; nil if it cannot (then only the slow
// path serves the entry).
func packWire(m *dns.Msg) *wireAnswer {
	c := m.Copy()
	c.Id = 0
	c.Extra = stripOPT(c.Extra)
	c.Compress = true
	b, err := c.Pack()
	if err != nil || len(b) > 0xffff {
		return nil
	}
	offs, ok := ttlOffsets(b)
	if !ok {
		return nil
	}
	w := &wireAnswer{msg: b, ttlOffs: offs}
	for _, rr := range c.Answer {
		if cn, ok := rr.(*dns.CNAME); ok {
			w.cnames = append(w.cnames, strings.ToLower(strings.TrimSuffix(cn.Target, ".")))
		}
	}
	return w
}

func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(b []byte, off int) (int, bool) {
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			return off + 2, off+2 <= len(b)
		case l&0xc0 != 0:
			return 0, false
		default:
			off += 1 + l
		}
	}
	return 0, false
}

// ttlOffsets walks a packed message and returns where each record's TTL
// is.
func ttlOffsets(b []byte) ([]uint16, bool) {
	if len(b) < 12 {
		return nil, false
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	var ok bool
	for range qd {
		if off, ok = skipName(b, off); !ok || off+4 > len(b) {
			return nil, false
		}
		off += 4
	}
	offs := make([]uint16, 0, rrs)
	for range rrs {
		if off, ok = skipName(b, off); !ok || off+10 > len(b) {
			return nil, false
		}
		offs = append(offs, uint16(off+4))
		rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
		off += 10 + rdlen
		if off > len(b) {
			return nil, false
		}
	}
	return offs, off == len(b)
}

// CachedWire appends to dst a fresh cached answer to q in wire format,
// with TTLs aged, ID 0 and the upstream's header flags; it also returns the
// CNAME targets of the answer (for the filter's check). ok is false when
// the answer is not cached, or not in wire form.
func (r *Resolver) CachedWire(q dns.Question, do, cd bool, dst []byte) (out []byte, cnames []string, ok bool) {
	c := r.cache.Load()
	key := cacheKey(q, do, cd)
	now := r.now()
	e := c.get(key)
	if e == nil || e.wire == nil || !now.Before(e.expires) {
		return dst, nil, false
	}
	r.m.hits.Inc()
	e.hits.Add(1)
	e.lastUsed.Store(now.UnixNano())
	r.maybePrefetch(r.cfg.Load(), c, key, q, do, cd, e, now)
	age := uint32(now.Sub(e.stored) / time.Second)
	start := len(dst)
	out = append(dst, e.wire.msg...)
	b := out[start:]
	for _, o := range e.wire.ttlOffs {
		ttl := binary.BigEndian.Uint32(b[o:])
		if ttl > age {
			ttl -= age
		} else {
			ttl = 0
		}
		binary.BigEndian.PutUint32(b[o:], ttl)
	}
	return out, e.wire.cnames, true
}
