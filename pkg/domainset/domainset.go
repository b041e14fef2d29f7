// Package domainset is the compact, immutable matcher behind the DNS
// filter's category lists. An entry matches itself and every subdomain
// (UT1/squidGuard semantics): "example.com" covers "a.b.example.com" but not
// "xexample.com".
//
// A Set stores, per distinct domain, a 64-bit keyed hash (8 bytes), the index
// of its tag combination (2 bytes) and about one byte of bucket index: 11
// bytes per domain, against hundreds for a map of strings. The hash is keyed
// with a random seed per Set, so nobody can craft colliding names in advance;
// the chance that an unlisted name collides with a listed one is about
// n/2^64 per lookup (below 10^-12 for the 5 million names of UT1's adult
// category), which we accept for a filter.
package domainset

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MaxTags is how many distinct tags (categories) one Set can carry.
const MaxTags = 128

// Tags is a set of tag numbers 0..MaxTags-1.
type Tags [2]uint64

// Add returns t with tag i set.
func (t Tags) Add(i int) Tags { t[i>>6] |= 1 << (i & 63); return t }

// Has reports whether tag i is set.
func (t Tags) Has(i int) bool { return t[i>>6]&(1<<(i&63)) != 0 }

// And returns the tags in both t and u.
func (t Tags) And(u Tags) Tags { return Tags{t[0] & u[0], t[1] & u[1]} }

// Or returns the tags in t or u.
func (t Tags) Or(u Tags) Tags { return Tags{t[0] | u[0], t[1] | u[1]} }

// Empty reports whether no tag is set.
func (t Tags) Empty() bool { return t[0]|t[1] == 0 }

// First returns the lowest tag set, or -1.
func (t Tags) First() int {
	if t[0] != 0 {
		return bits.TrailingZeros64(t[0])
	}
	if t[1] != 0 {
		return 64 + bits.TrailingZeros64(t[1])
	}
	return -1
}

// Set is an immutable set of domains, each carrying tags. The zero value
// is an empty set. It is safe for concurrent use.
type Set struct {
	seed   maphash.Seed
	keys   []uint64 // sorted hashes of the domains
	tags   []uint16 // per key: index into combos
	combos []Tags   // distinct tag combinations
	index  []uint32 // index[b]..index[b+1] are the keys whose top bits are b
	shift  uint
}

// Len returns the number of distinct domains in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// TagCounts returns, per tag, the number of distinct domains carrying it
// (a domain added twice with a tag counts once).
func (s *Set) TagCounts() [MaxTags]int {
	var out [MaxTags]int
	if s == nil {
		return out
	}
	perCombo := make([]int, len(s.combos))
	for _, c := range s.tags {
		perCombo[c]++
	}
	for c, n := range perCombo {
		t := s.combos[c]
		for i := range MaxTags {
			if t.Has(i) {
				out[i] += n
			}
		}
	}
	return out
}

// Bytes returns the memory the set holds, for metrics and benchmarks.
func (s *Set) Bytes() int {
	if s == nil {
		return 0
	}
	return cap(s.keys)*8 + cap(s.tags)*2 + cap(s.combos)*16 + cap(s.index)*4
}

// Lookup returns the tags of domain, which must be normalized, matched
// exactly (no parent domains).
func (s *Set) Lookup(domain string) (Tags, bool) {
	if s == nil || len(s.keys) == 0 {
		return Tags{}, false
	}
	h := maphash.String(s.seed, domain)
	b := h >> s.shift
	lo, hi := int(s.index[b]), int(s.index[b+1])
	for lo < hi { // buckets hold a handful of keys: binary search anyway
		m := int(uint(lo+hi) >> 1)
		switch k := s.keys[m]; {
		case k == h:
			return s.combos[s.tags[m]], true
		case k < h:
			lo = m + 1
		default:
			hi = m
		}
	}
	return Tags{}, false
}

// Match returns the tags of the most specific entry covering name (name
// itself, then its parents up to the top-level domain), with the entry that
// matched. name must be normalized.
func (s *Set) Match(name string) (tags Tags, entry string, ok bool) {
	for suffix := range Suffixes(name) {
		if t, ok := s.Lookup(suffix); ok {
			return t, suffix, true
		}
	}
	return Tags{}, "", false
}

// Suffixes yields name, then each parent domain of name: a.b.c, b.c, c.
func Suffixes(name string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for {
			if !yield(name) {
				return
			}
			i := strings.IndexByte(name, '.')
			if i < 0 {
				return
			}
			name = name[i+1:]
		}
	}
}

// Builder collects domains and their tags, then builds a Set once.
type Builder struct {
	seed maphash.Seed
	keys []uint64
	tags []uint8
}

// NewBuilder returns a builder; sizeHint is the expected number of
// entries (0 if unknown).
func NewBuilder(sizeHint int) *Builder {
	return &Builder{seed: maphash.MakeSeed(), keys: make([]uint64, 0, sizeHint), tags: make([]uint8, 0, sizeHint)}
}

// Add records domain (normalized) with tag; a domain added several times
// carries the union of its tags.
func (b *Builder) Add(domain string, tag int) {
	if tag < 0 || tag >= MaxTags {
		panic(fmt.Sprintf("domainset: tag %d out of range", tag))
	}
	b.keys = append(b.keys, maphash.String(b.seed, domain))
	b.tags = append(b.tags, uint8(tag))
}

// Len returns the number of entries added so far (duplicates included).
func (b *Builder) Len() int { return len(b.keys) }

// ErrTooManyCombinations is returned when domains carry more distinct tag
// combinations than a Set can index.
var ErrTooManyCombinations = errors.New("domainset: more than 65535 distinct tag combinations")

// Build returns the immutable set. The builder must not be used again.
func (b *Builder) Build() (*Set, error) {
	n := len(b.keys)
	s := &Set{seed: b.seed}
	// About four keys per bucket keeps the index near one byte per key.
	bucketBits := 1
	for (1<<bucketBits)*4 < n {
		bucketBits++
	}
	s.shift = uint(64 - bucketBits)
	nb := 1 << bucketBits

	// Distribute into buckets by the hash's top bits (a counting sort: the
	// hash is uniform), then sort each small bucket: much faster than a
	// comparison sort of millions of keys.
	counts := make([]uint32, nb+1)
	for _, k := range b.keys {
		counts[(k>>s.shift)+1]++
	}
	for i := 1; i <= nb; i++ {
		counts[i] += counts[i-1]
	}
	keys := make([]uint64, n)
	raw := make([]uint8, n)
	pos := make([]uint32, nb)
	copy(pos, counts[:nb])
	for i, k := range b.keys {
		bk := k >> s.shift
		keys[pos[bk]] = k
		raw[pos[bk]] = b.tags[i]
		pos[bk]++
	}
	b.keys, b.tags, pos = nil, nil, nil
	for bk := 0; bk < nb; bk++ {
		insertionSort(keys[counts[bk]:counts[bk+1]], raw[counts[bk]:counts[bk+1]])
	}

	// Merge duplicates (a domain listed twice, or in several categories)
	// and intern tag combinations.
	combos := map[Tags]uint16{}
	var single [MaxTags]int32 // combo of a lone tag, +1 (0: none yet)
	s.tags = make([]uint16, 0, n)
	s.index = make([]uint32, nb+1)
	out := 0
	for bk := 0; bk < nb; bk++ {
		s.index[bk] = uint32(out)
		for i := int(counts[bk]); i < int(counts[bk+1]); {
			k := keys[i]
			if i+1 == int(counts[bk+1]) || keys[i+1] != k {
				// Most domains are in one category: skip the map.
				if c := single[raw[i]]; c > 0 {
					keys[out] = k
					s.tags = append(s.tags, uint16(c-1))
					out++
					i++
					continue
				}
			}
			var t Tags
			for ; i < int(counts[bk+1]) && keys[i] == k; i++ {
				t = t.Add(int(raw[i]))
			}
			c, ok := combos[t]
			if !ok {
				if len(s.combos) == 1<<16-1 {
					return nil, ErrTooManyCombinations
				}
				c = uint16(len(s.combos))
				combos[t] = c
				s.combos = append(s.combos, t)
				if f := t.First(); t == (Tags{}).Add(f) {
					single[f] = int32(c) + 1
				}
			}
			keys[out] = k
			s.tags = append(s.tags, c)
			out++
		}
	}
	s.index[nb] = uint32(out)
	// Shrink to size so the set holds no slack.
	s.keys = append([]uint64(nil), keys[:out]...)
	if cap(s.tags) > out+out/8 {
		s.tags = append([]uint16(nil), s.tags...)
	}
	return s, nil
}

func insertionSort(k []uint64, t []uint8) {
	for i := 1; i < len(k); i++ {
		for j := i; j > 0 && k[j] < k[j-1]; j-- {
			k[j], k[j-1] = k[j-1], k[j]
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}

// Normalize returns the canonical form of a domain as lists and queries
// are compared: lower case, no trailing dot, IDN labels in punycode. It
// rejects what cannot be a domain name.
func Normalize(name string) (string, error) {
	name = strings.TrimSuffix(strings.TrimSpace(name), ".")
	if name == "" {
		return "", errors.New("empty name")
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		p, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("%q: not a valid internationalized name: %w", name, err)
		}
		name = p
	}
	if len(name) > 253 {
		return "", fmt.Errorf("%q: longer than 253 characters", name)
	}
	lower := true
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			lower = false
			break
		}
	}
	if !lower {
		name = strings.ToLower(name)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("%q: empty label", name)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("%q: character %q not allowed in a domain name", name, c)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("%q: label longer than 63 characters", name)
		}
	}
	return name, nil
}
