package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/netmark"
)

// TableName is the box's own nftables table (family inet).
const TableName = "passerelle"

// Plan is the desired content of the box's table. It is plain data: the
// Linux apply step lowers it to netlink messages, String renders it as nft
// input (what `nft -f` would load, and what `passerellectl firewall
// compile` prints).
type Plan struct {
	// Counters are the named counter objects, created before the rules
	// that reference them.
	Counters []string
	Sets     []Set
	Chains   []Chain
}

var _ box.Plan = (*Plan)(nil)

// SetKind is what a named set holds.
type SetKind int

const (
	// SetIfnames holds interface names.
	SetIfnames SetKind = iota
	// SetIPv4Ranges is an interval set of IPv4 ranges (prefixes, merged).
	SetIPv4Ranges
	// SetIPv4Addrs is a hash set of IPv4 addresses.
	SetIPv4Addrs
	// SetIPv6Addrs is a hash set of IPv6 addresses.
	SetIPv6Addrs
	// SetIPv4Meter is a meter: a dynamic set of IPv4 source addresses
	// that Meter rules fill, each element holding its own limit, forgotten
	// Timeout after its last packet; at most Size elements.
	SetIPv4Meter
)

// Set is a named set of the table.
type Set struct {
	Name    string
	Kind    SetKind
	Ifnames []string      // SetIfnames
	Ranges  []Range       // SetIPv4Ranges: sorted, merged, non-adjacent
	Addrs   []netip.Addr  // SetIPv4Addrs, SetIPv6Addrs
	Size    uint32        // SetIPv4Meter
	Timeout time.Duration // SetIPv4Meter: whole seconds
	// Runtime sets are filled by the box at run time (Firewall.SetBlocked);
	// the plan declares them empty and Apply re-adds their current
	// contents on every replacement.
	Runtime bool
}

// Chain is a chain of the table; Base is nil for a regular chain (reached
// by jumps).
type Chain struct {
	Name  string
	Base  *BaseChain
	Rules []Rule
}

// BaseChain attaches a chain to a netfilter hook.
type BaseChain struct {
	Type     string // filter or nat
	Hook     string // prerouting, input, forward, output, postrouting
	Priority int    // netfilter priority; see priorityName
	Drop     bool   // policy drop (else accept)
}

// Standard priorities, by nft's names.
const (
	PrioMangle = -150
	PrioDstNAT = -100
	PrioFilter = 0
	PrioSrcNAT = 100
)

func priorityName(p int) string {
	switch p {
	case PrioMangle:
		return "mangle"
	case PrioDstNAT:
		return "dstnat"
	case PrioFilter:
		return "filter"
	case PrioSrcNAT:
		return "srcnat"
	}
	return fmt.Sprint(p)
}

// Rule is one nftables rule: matches then statements, in order.
// Comment is shown in the plan's text for review; it is not loaded.
type Rule struct {
	Comment string
	Exprs   []Expr
}

func (r Rule) String() string {
	parts := make([]string, len(r.Exprs))
	for i, e := range r.Exprs {
		parts[i] = e.String()
	}
	return strings.Join(parts, " ")
}

// Expr is one match or statement of a rule. The set of expressions is
// closed: each has a text form (nft syntax) and a lowering to netlink
// expressions in the Linux apply step.
type Expr interface {
	String() string
	expr()
}

// IfName matches the input (or output) interface name.
type IfName struct {
	Out  bool
	Neg  bool
	Name string
}

// IfSet matches the input (or output) interface name against a named set.
type IfSet struct {
	Out bool
	Set string
}

// AddrIs matches the source (or destination) IPv4 address against one
// prefix (a /32 for a single address).
type AddrIs struct {
	Dst    bool
	Neg    bool
	Prefix netip.Prefix
}

// AddrIn matches the source (or destination) IPv4 address against
// several ranges (an anonymous interval set).
type AddrIn struct {
	Dst    bool
	Ranges []Range
}

// AddrSet matches the source (or destination) address against a named set;
// V6 for an IPv6 set.
type AddrSet struct {
	Dst bool
	V6  bool
	Set string
}

// L4 matches the transport protocol: tcp, udp or icmp.
type L4 struct{ Proto string }

// Ports matches the TCP or UDP destination port (Src: source port).
type Ports struct {
	Proto  string
	Src    bool
	Ranges []PortRange
}

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

func (p PortRange) String() string {
	if p.First == p.Last {
		return fmt.Sprint(p.First)
	}
	return fmt.Sprintf("%d-%d", p.First, p.Last)
}

// ICMPEcho matches IPv4 echo requests.
type ICMPEcho struct{}

// CtState matches conntrack states (any of them).
type CtState struct{ States []string }

// CtDNAT matches connections whose destination was NAT-ed (port forwards).
type CtDNAT struct{}

// CtNoUplink matches connections not yet tied to an uplink:
// ct mark & netmark.UplinkMask == 0.
type CtNoUplink struct{}

// TCPSyn matches TCP segments with SYN set and RST clear (MSS clamping);
// New: SYN alone among FIN, SYN, RST, ACK (a connection attempt).
type TCPSyn struct{ New bool }

// RPFail matches packets whose source address would not be routed back
// through their input interface, with the packet mark taken into account:
// the anti-spoofing check.
type RPFail struct{}

// DaddrLocal matches packets addressed to one of the box's own addresses.
type DaddrLocal struct{}

// NfprotoIPv4 matches IPv4 packets (in the inet family).
type NfprotoIPv4 struct{}

// Limit is a packet rate limit: it matches while under Rate per second
// (Over: once over it).
type Limit struct {
	Rate, Burst uint32
	Over        bool
}

// Meter applies Limit per source address: the source's element of the
// meter set Set is added or refreshed, and the rule goes on only when that
// source is over its own limit (Limit.Over) or under it.
type Meter struct {
	Set   string
	Limit Limit
}

// Counter counts into a named counter object.
type Counter struct{ Name string }

// RestoreMark sets the packet mark to the connection's uplink bits:
// meta mark = ct mark & netmark.UplinkMask.
type RestoreMark struct{}

// SaveMark ties the connection to an uplink, keeping the other ct mark
// bits: ct mark = (ct mark &^ netmark.UplinkMask) | Mark.
type SaveMark struct{ Mark uint32 }

// ClampMSS lowers the TCP MSS option of SYNs to the route's MTU.
type ClampMSS struct{}

// Masquerade source-NATs to the output interface's address.
type Masquerade struct{}

// DNAT rewrites the destination to Addr (and Port, if not 0).
type DNAT struct {
	Addr netip.Addr
	Port uint16
}

// Verdict ends a rule: accept, drop, return, jump CHAIN, reject
// (icmpx admin-prohibited) or reset (tcp reset).
type Verdict struct {
	Kind  string
	Chain string
}

// Verdict kinds.
const (
	Accept = "accept"
	Drop   = "drop"
	Return = "return"
	Jump   = "jump"
	Reject = "reject"
	Reset  = "reset"
)

func (IfName) expr()      {}
func (IfSet) expr()       {}
func (AddrIs) expr()      {}
func (AddrIn) expr()      {}
func (AddrSet) expr()     {}
func (L4) expr()          {}
func (Ports) expr()       {}
func (ICMPEcho) expr()    {}
func (CtState) expr()     {}
func (CtDNAT) expr()      {}
func (CtNoUplink) expr()  {}
func (TCPSyn) expr()      {}
func (RPFail) expr()      {}
func (DaddrLocal) expr()  {}
func (NfprotoIPv4) expr() {}
func (Limit) expr()       {}
func (Meter) expr()       {}
func (Counter) expr()     {}
func (RestoreMark) expr() {}
func (SaveMark) expr()    {}
func (ClampMSS) expr()    {}
func (Masquerade) expr()  {}
func (DNAT) expr()        {}
func (Verdict) expr()     {}

func ifKey(out bool) string {
	if out {
		return "oifname"
	}
	return "iifname"
}

func addrKey(dst, v6 bool) string {
	fam := "ip"
	if v6 {
		fam = "ip6"
	}
	if dst {
		return fam + " daddr"
	}
	return fam + " saddr"
}

func neq(neg bool) string {
	if neg {
		return "!= "
	}
	return ""
}

func (e IfName) String() string { return fmt.Sprintf("%s %s%q", ifKey(e.Out), neq(e.Neg), e.Name) }
func (e IfSet) String() string  { return fmt.Sprintf("%s @%s", ifKey(e.Out), e.Set) }
func (e AddrIs) String() string {
	return fmt.Sprintf("%s %s%s", addrKey(e.Dst, false), neq(e.Neg), prefixText(e.Prefix))
}
func (e AddrIn) String() string {
	parts := make([]string, len(e.Ranges))
	for i, r := range e.Ranges {
		parts[i] = r.String()
	}
	return fmt.Sprintf("%s { %s }", addrKey(e.Dst, false), strings.Join(parts, ", "))
}
func (e AddrSet) String() string { return fmt.Sprintf("%s @%s", addrKey(e.Dst, e.V6), e.Set) }
func (e L4) String() string      { return "meta l4proto " + e.Proto }
func (e Ports) String() string {
	key := "dport"
	if e.Src {
		key = "sport"
	}
	parts := make([]string, len(e.Ranges))
	for i, r := range e.Ranges {
		parts[i] = r.String()
	}
	if len(parts) == 1 {
		return fmt.Sprintf("%s %s %s", e.Proto, key, parts[0])
	}
	return fmt.Sprintf("%s %s { %s }", e.Proto, key, strings.Join(parts, ", "))
}
func (ICMPEcho) String() string    { return "icmp type echo-request" }
func (e CtState) String() string   { return "ct state " + strings.Join(e.States, ",") }
func (CtDNAT) String() string      { return "ct status dnat" }
func (CtNoUplink) String() string  { return fmt.Sprintf("ct mark and %#x == 0", netmark.UplinkMask) }
func (RPFail) String() string      { return "fib saddr . mark . iif oif missing" }
func (DaddrLocal) String() string  { return "fib daddr type local" }
func (NfprotoIPv4) String() string { return "meta nfproto ipv4" }
func (e TCPSyn) String() string {
	if e.New {
		return "tcp flags & (fin | syn | rst | ack) == syn"
	}
	return "tcp flags & (syn | rst) == syn"
}
func (e Limit) String() string {
	over := ""
	if e.Over {
		over = "over "
	}
	return fmt.Sprintf("limit rate %s%d/second burst %d packets", over, e.Rate, e.Burst)
}
func (e Meter) String() string {
	return fmt.Sprintf("update @%s { ip saddr %s }", e.Set, e.Limit)
}
func (e Counter) String() string { return fmt.Sprintf("counter name %q", e.Name) }
func (RestoreMark) String() string {
	return fmt.Sprintf("meta mark set ct mark and %#x", netmark.UplinkMask)
}
func (e SaveMark) String() string {
	return fmt.Sprintf("ct mark set ct mark and %#x or %#x", ^netmark.UplinkMask, e.Mark)
}
func (ClampMSS) String() string   { return "tcp option maxseg size set rt mtu" }
func (Masquerade) String() string { return "masquerade" }
func (e DNAT) String() string {
	if e.Port != 0 {
		return fmt.Sprintf("dnat ip to %s:%d", e.Addr, e.Port)
	}
	return "dnat ip to " + e.Addr.String()
}
func (e Verdict) String() string {
	switch e.Kind {
	case Jump:
		return "jump " + e.Chain
	case Reject:
		return "reject with icmpx admin-prohibited"
	case Reset:
		return "reject with tcp reset"
	}
	return e.Kind
}

// durationText prints a duration as nft does: 1h2m3s, 10s.
func durationText(d time.Duration) string {
	var b strings.Builder
	s := int64(d / time.Second)
	for _, u := range []struct {
		secs int64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if s >= u.secs {
			fmt.Fprintf(&b, "%d%s", s/u.secs, u.name)
			s %= u.secs
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}

// prefixText prints a prefix as nft does: a bare address for a /32.
func prefixText(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// String renders the plan as nft input: `nft -f` loads exactly this table
// (comments included: nft skips them), and the live table read back by
// Show prints the same text without the comments and with real counter
// values.
func (p *Plan) String() string {
	t := textTable{}
	for _, c := range p.Counters {
		t.counters = append(t.counters, textCounter{name: c})
	}
	for _, s := range p.Sets {
		t.sets = append(t.sets, textSet{name: s.Name, kind: s.Kind, size: s.Size, timeout: s.Timeout, elems: s.elementTexts()})
	}
	for _, c := range p.Chains {
		tc := textChain{name: c.Name, base: c.Base}
		for _, r := range c.Rules {
			if r.Comment != "" {
				tc.lines = append(tc.lines, "# "+r.Comment)
			}
			tc.lines = append(tc.lines, r.String())
		}
		t.chains = append(t.chains, tc)
	}
	return t.String()
}

func (s Set) elementTexts() []string {
	var out []string
	switch s.Kind {
	case SetIfnames:
		for _, n := range s.Ifnames {
			out = append(out, fmt.Sprintf("%q", n))
		}
	case SetIPv4Ranges:
		for _, r := range s.Ranges {
			out = append(out, r.String())
		}
	case SetIPv4Addrs, SetIPv6Addrs:
		for _, a := range s.Addrs {
			out = append(out, a.String())
		}
	}
	return out
}

// textTable is the text form shared by Plan.String and Show, so that the
// plan and the live table print alike.
type textTable struct {
	counters []textCounter
	sets     []textSet
	chains   []textChain
}

type textCounter struct {
	name           string
	packets, bytes uint64
}

type textSet struct {
	name    string
	kind    SetKind
	size    uint32        // meters
	timeout time.Duration // meters
	elems   []string
}

type textChain struct {
	name  string
	base  *BaseChain
	lines []string
}

func (t textTable) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	items := 0
	sep := func() { // a blank line between items, as nft prints them
		if items > 0 {
			b.WriteString("\n")
		}
		items++
	}
	for _, c := range t.counters {
		sep()
		fmt.Fprintf(&b, "\tcounter %s {\n\t\tpackets %d bytes %d\n\t}\n", c.name, c.packets, c.bytes)
	}
	for _, s := range t.sets {
		sep()
		fmt.Fprintf(&b, "\tset %s {\n", s.name)
		switch s.kind {
		case SetIfnames:
			b.WriteString("\t\ttype ifname\n")
		case SetIPv4Ranges:
			b.WriteString("\t\ttype ipv4_addr\n\t\tflags interval\n")
		case SetIPv4Addrs:
			b.WriteString("\t\ttype ipv4_addr\n")
		case SetIPv6Addrs:
			b.WriteString("\t\ttype ipv6_addr\n")
		case SetIPv4Meter:
			fmt.Fprintf(&b, "\t\ttype ipv4_addr\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n", s.size, durationText(s.timeout))
		}
		if len(s.elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(s.elems, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.base != nil {
			policy := Accept
			if c.base.Drop {
				policy = Drop
			}
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", c.base.Type, c.base.Hook, priorityName(c.base.Priority), policy)
		}
		for _, l := range c.lines {
			fmt.Fprintf(&b, "\t\t%s\n", l)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
