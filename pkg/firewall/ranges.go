package firewall

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// Range is an inclusive range of IPv4 addresses. Interval sets hold
// ranges, not prefixes: the kernel refuses overlapping intervals, so
// prefixes are merged first (MergePrefixes).
type Range struct{ First, Last netip.Addr }

// String prints the range as nft does: a prefix when it is exactly one,
// else first-last.
func (r Range) String() string {
	if p, ok := r.Prefix(); ok {
		return prefixText(p)
	}
	return fmt.Sprintf("%s-%s", r.First, r.Last)
}

// Prefix returns the range as a prefix, if it is exactly one.
func (r Range) Prefix() (netip.Prefix, bool) {
	first, last := v4(r.First), v4(r.Last)
	size := uint64(last) - uint64(first) + 1
	if size&(size-1) != 0 || uint64(first)%size != 0 {
		return netip.Prefix{}, false
	}
	bits := 32
	for s := size; s > 1; s >>= 1 {
		bits--
	}
	return netip.PrefixFrom(r.First, bits), true
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// MergePrefixes turns IPv4 prefixes into sorted ranges that neither
// overlap nor touch: what an nftables interval set accepts. It returns an
// error for anything but an IPv4 prefix without host bits.
func MergePrefixes(ps []netip.Prefix) ([]Range, error) {
	type iv struct{ first, last uint32 }
	ivs := make([]iv, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("%v is not an IPv4 prefix", p)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%v has host bits set", p)
		}
		first := v4(p.Addr())
		last := first | uint32(uint64(1)<<(32-p.Bits())-1)
		ivs = append(ivs, iv{first, last})
	}
	slices.SortFunc(ivs, func(a, b iv) int { return cmp.Compare(a.first, b.first) })
	var out []Range
	var cur iv
	for i, x := range ivs {
		switch {
		case i == 0:
			cur = x
		case cur.last == ^uint32(0) || x.first <= cur.last+1:
			cur.last = max(cur.last, x.last)
		default:
			out = append(out, Range{addr4(cur.first), addr4(cur.last)})
			cur = x
		}
	}
	if len(ivs) > 0 {
		out = append(out, Range{addr4(cur.first), addr4(cur.last)})
	}
	return out, nil
}

// mergePorts sorts port ranges and joins those that overlap or touch.
func mergePorts(rs []PortRange) []PortRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b PortRange) int { return cmp.Compare(a.First, b.First) })
	var out []PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].Last == 65535 || r.First <= out[n-1].Last+1) {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}
