package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"passerelle/pkg/netmark"
)

// Lowering: the plan's expressions to netlink expressions, as nft itself
// encodes the same text (checked against `nft -f` in the tests).

// Conntrack state bits (nf_conntrack_common.h, NF_CT_STATE_BIT and
// IP_CT_*): what "ct state" compares against.
var ctStateBits = map[string]uint32{
	"invalid":     1,
	"established": 2,
	"related":     4,
	"new":         8,
	"untracked":   64,
}

// ipsDstNAT is IPS_DST_NAT (nf_conntrack_common.h): "ct status dnat".
const ipsDstNAT = 0x20

// rtnLocal is RTN_LOCAL: "fib daddr type local".
const rtnLocal = 2

// lowerer turns rules into expressions, adding the anonymous sets they
// need to the batch of conn.
type lowerer struct {
	conn  *nftables.Conn
	table *nftables.Table
	// anonSet, if set, sees every anonymous set added (tests).
	anonSet func(*nftables.Set, []nftables.SetElement)
	// v4 says the rule being lowered already checks meta nfproto ipv4:
	// nft checks it once per rule, before the first IPv4 header field.
	v4 bool
}

// ipv4 is the rule's nfproto ipv4 check, the first time a rule needs one.
func (l *lowerer) ipv4() []expr.Any {
	if l.v4 {
		return nil
	}
	l.v4 = true
	return nfproto(false)
}

func (l *lowerer) addAnon(s *nftables.Set, elems []nftables.SetElement) error {
	if err := l.conn.AddSet(s, elems); err != nil {
		return err
	}
	if l.anonSet != nil {
		l.anonSet(s, elems)
	}
	return nil
}

func ifnameBytes(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

var l4protos = map[string]byte{"icmp": unix.IPPROTO_ICMP, "tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}

func l4(proto string) ([]expr.Any, error) {
	n, ok := l4protos[proto]
	if !ok {
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{n}},
	}, nil
}

func nfproto(v6 bool) []expr.Any {
	v := byte(unix.NFPROTO_IPV4)
	if v6 {
		v = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}},
	}
}

func addrPayload(dst, v6 bool) *expr.Payload {
	p := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	if dst {
		p.Offset = 16
	}
	if v6 {
		p.Offset, p.Len = 8, 16
		if dst {
			p.Offset = 24
		}
	}
	return p
}

func cmpOp(neg bool) expr.CmpOp {
	if neg {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// rule lowers one rule.
func (l *lowerer) rule(r Rule) ([]expr.Any, error) {
	var out []expr.Any
	l.v4 = false
	for _, e := range r.Exprs {
		x, err := l.expr(e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e, err)
		}
		out = append(out, x...)
	}
	return out, nil
}

func (l *lowerer) expr(e Expr) ([]expr.Any, error) {
	switch e := e.(type) {
	case IfName:
		key := expr.MetaKeyIIFNAME
		if e.Out {
			key = expr.MetaKeyOIFNAME
		}
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: cmpOp(e.Neg), Register: 1, Data: ifnameBytes(e.Name)},
		}, nil
	case IfSet:
		key := expr.MetaKeyIIFNAME
		if e.Out {
			key = expr.MetaKeyOIFNAME
		}
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: e.Set},
		}, nil
	case AddrIs:
		if !e.Prefix.Addr().Is4() {
			return nil, fmt.Errorf("%v is not IPv4", e.Prefix)
		}
		out := append(l.ipv4(), addrPayload(e.Dst, false))
		p := e.Prefix.Masked()
		if p.Bits() < 32 {
			mask := uint32(0xffffffff) << (32 - p.Bits())
			if p.Bits() == 0 {
				mask = 0
			}
			out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binary.BigEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)})
		}
		a := p.Addr().As4()
		return append(out, &expr.Cmp{Op: cmpOp(e.Neg), Register: 1, Data: a[:]}), nil
	case AddrIn:
		set := &nftables.Set{Table: l.table, Anonymous: true, Constant: true, Interval: true, KeyType: nftables.TypeIPAddr}
		if err := l.addAnon(set, ipv4RangeElems(e.Ranges)); err != nil {
			return nil, err
		}
		return append(l.ipv4(), addrPayload(e.Dst, false),
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID}), nil
	case AddrSet:
		proto := nfproto(true)
		if !e.V6 {
			proto = l.ipv4()
		}
		return append(proto, addrPayload(e.Dst, e.V6), &expr.Lookup{SourceRegister: 1, SetName: e.Set}), nil
	case L4:
		return l4(e.Proto)
	case Ports:
		if e.Proto != "tcp" && e.Proto != "udp" {
			return nil, fmt.Errorf("ports need tcp or udp, not %q", e.Proto)
		}
		out, _ := l4(e.Proto)
		p := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
		if e.Src {
			p.Offset = 0
		}
		out = append(out, p)
		rs := mergePorts(e.Ranges)
		switch {
		case len(rs) == 0:
			return nil, fmt.Errorf("no ports")
		case len(rs) == 1 && rs[0].First == rs[0].Last:
			out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(rs[0].First)})
		case len(rs) == 1:
			out = append(out,
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(rs[0].First)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(rs[0].Last)})
		default:
			set := &nftables.Set{Table: l.table, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
			for _, r := range rs {
				if r.First != r.Last {
					set.Interval = true
				}
			}
			var elems []nftables.SetElement
			for _, r := range rs {
				if set.Interval {
					elems = append(elems, intervalElems(be16(r.First), be16(r.Last))...)
					continue
				}
				elems = append(elems, nftables.SetElement{Key: be16(r.First)})
			}
			if err := l.addAnon(set, elems); err != nil {
				return nil, err
			}
			out = append(out, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
		}
		return out, nil
	case ICMPEcho:
		icmp, _ := l4("icmp")
		out := append(l.ipv4(), icmp...)
		return append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{8}}), nil
	case CtState:
		var bits uint32
		for _, s := range e.States {
			b, ok := ctStateBits[s]
			if !ok {
				return nil, fmt.Errorf("unknown conntrack state %q", s)
			}
			bits |= b
		}
		return ctBits(expr.CtKeySTATE, bits), nil
	case CtDNAT:
		return ctBits(expr.CtKeySTATUS, ipsDstNAT), nil
	case CtNoUplink:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(netmark.UplinkMask), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
		}, nil
	case TCPSyn:
		mask := byte(0x02 | 0x04) // syn, rst
		if e.New {
			mask = 0x01 | 0x02 | 0x04 | 0x10 // fin, syn, rst, ack
		}
		out, _ := l4("tcp")
		return append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}}), nil
	case RPFail:
		return []expr.Any{
			&expr.Fib{Register: 1, ResultOIF: true, FlagSADDR: true, FlagMARK: true, FlagIIF: true, FlagPRESENT: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
		}, nil
	case DaddrLocal:
		return []expr.Any{
			&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(rtnLocal)},
		}, nil
	case NfprotoIPv4:
		l.v4 = true
		return nfproto(false), nil
	case Limit:
		return []expr.Any{limitExpr(e)}, nil
	case Meter:
		return append(l.ipv4(), addrPayload(false, false), &expr.Dynset{
			SrcRegKey: 1, SetName: e.Set, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{limitExpr(e.Limit)},
		}), nil
	case Counter:
		return []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: e.Name}}, nil
	case RestoreMark:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(netmark.UplinkMask), Xor: native32(0)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		}, nil
	case SaveMark:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^netmark.UplinkMask), Xor: native32(e.Mark)},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		}, nil
	case ClampMSS:
		return []expr.Any{
			&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
			&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
		}, nil
	case Masquerade:
		return []expr.Any{&expr.Masq{}}, nil
	case DNAT:
		if !e.Addr.Is4() {
			return nil, fmt.Errorf("dnat to %v: not IPv4", e.Addr)
		}
		a := e.Addr.As4()
		out := []expr.Any{&expr.Immediate{Register: 1, Data: a[:]}}
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
		if e.Port != 0 {
			out = append(out, &expr.Immediate{Register: 2, Data: be16(e.Port)})
			nat.RegProtoMin, nat.Specified = 2, true
		}
		return append(out, nat), nil
	case Verdict:
		switch e.Kind {
		case Accept:
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}, nil
		case Drop:
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}, nil
		case Return:
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, nil
		case Jump:
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: e.Chain}}, nil
		case Reject:
			return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}, nil
		case Reset:
			return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, nil
		}
		return nil, fmt.Errorf("unknown verdict %q", e.Kind)
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

func limitExpr(e Limit) *expr.Limit {
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(e.Rate), Unit: expr.LimitTimeSecond, Burst: e.Burst, Over: e.Over}
}

// ctBits matches "ct KEY & bits != 0", as nft encodes ct state and status.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(bits), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)},
	}
}

// intervalElems encodes one inclusive range of an interval set: a start
// element, and an end element flagged IntervalEnd holding the first key
// after the range. A range that ends at the largest key has no key after
// it: the start element alone, flagged open, says "to the end".
func intervalElems(first, last []byte) []nftables.SetElement {
	end := make([]byte, len(last))
	copy(end, last)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return []nftables.SetElement{{Key: first}, {Key: end, IntervalEnd: true}}
		}
	}
	return []nftables.SetElement{{Key: first, IntervalOpen: true}}
}

func ipv4RangeElems(rs []Range) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, 2*len(rs))
	for _, r := range rs {
		f, l := r.First.As4(), r.Last.As4()
		elems = append(elems, intervalElems(f[:], l[:])...)
	}
	return elems
}

func addrElems(as []netip.Addr) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
	}
	return elems
}

// nftSet is the netlink form of a named set, with its elements (runtime
// sets get theirs from the caller).
func nftSet(t *nftables.Table, s Set, runtime []netip.Addr) (*nftables.Set, []nftables.SetElement, error) {
	ns := &nftables.Set{Table: t, Name: s.Name}
	var elems []nftables.SetElement
	switch s.Kind {
	case SetIfnames:
		// nft reads interface names back only with the key's byte order
		// recorded as host order (it does so for strings).
		ns.KeyType, ns.KeyByteOrder = nftables.TypeIFName, binaryutil.NativeEndian
		for _, n := range s.Ifnames {
			elems = append(elems, nftables.SetElement{Key: ifnameBytes(n)})
		}
	case SetIPv4Ranges:
		ns.KeyType, ns.Interval = nftables.TypeIPAddr, true
		elems = ipv4RangeElems(s.Ranges)
	case SetIPv4Addrs:
		ns.KeyType = nftables.TypeIPAddr
		elems = addrElems(s.Addrs)
	case SetIPv6Addrs:
		ns.KeyType = nftables.TypeIP6Addr
		elems = addrElems(s.Addrs)
	case SetIPv4Meter:
		ns.KeyType, ns.Dynamic, ns.HasTimeout, ns.Timeout, ns.Size = nftables.TypeIPAddr, true, true, s.Timeout, s.Size
	default:
		return nil, nil, fmt.Errorf("set %s: unknown kind %d", s.Name, s.Kind)
	}
	if s.Runtime {
		elems = addrElems(runtime)
	}
	return ns, elems, nil
}
