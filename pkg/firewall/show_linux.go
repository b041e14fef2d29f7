package firewall

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Show writes the live table of the current network namespace as nft
// text, counters included: what `passerelle firewall show` prints. It
// reads the kernel through netlink and prints the expressions this
// package generates the way Plan.String does; anything else (someone
// editing the table by hand) shows as <expr ...>.
func Show(w io.Writer) error {
	return (&Firewall{}).Show(w)
}

// Show writes the live table of the firewall's namespace.
func (f *Firewall) Show(w io.Writer) error {
	t, err := f.live()
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, t.String())
	return err
}

// live reads the table back from the kernel into its text form.
func (f *Firewall) live() (textTable, error) {
	var t textTable
	c, err := f.readConn()
	if err != nil {
		return t, err
	}
	tab := ourTable()
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return t, ErrNoTable
		}
		return t, fmt.Errorf("list table: %w", err)
	}
	counters, err := f.counters()
	if err != nil {
		return t, fmt.Errorf("read counters: %w", err)
	}
	for _, k := range counters {
		t.counters = append(t.counters, textCounter{name: k.Name, packets: k.Packets, bytes: k.Bytes})
	}
	sets, err := c.GetSets(tab)
	if err != nil {
		return t, fmt.Errorf("list sets: %w", err)
	}
	anon := map[string][]string{}
	for _, s := range sets {
		els, err := c.GetSetElements(s)
		if err != nil {
			return t, fmt.Errorf("set %s: %w", s.Name, err)
		}
		texts := elementTexts(s, els)
		if s.Anonymous {
			anon[s.Name] = texts
			continue
		}
		ts := textSet{name: s.Name, elems: texts}
		switch {
		case s.Dynamic && s.KeyType.Name == nftables.TypeIPAddr.Name:
			ts.kind, ts.size, ts.timeout = SetIPv4Meter, s.Size, s.Timeout
		case s.KeyType.Name == nftables.TypeIFName.Name:
			ts.kind = SetIfnames
		case s.KeyType.Name == nftables.TypeIPAddr.Name && s.Interval:
			ts.kind = SetIPv4Ranges
		case s.KeyType.Name == nftables.TypeIPAddr.Name:
			ts.kind = SetIPv4Addrs
		default:
			ts.kind = SetIPv6Addrs
		}
		t.sets = append(t.sets, ts)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return t, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		tc := textChain{name: ch.Name}
		if ch.Hooknum != nil {
			b := &BaseChain{Type: string(ch.Type), Hook: hookName(*ch.Hooknum)}
			if ch.Priority != nil {
				b.Priority = int(*ch.Priority)
			}
			b.Drop = ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop
			tc.base = b
		}
		rules, err := c.GetRules(tab, ch)
		if err != nil {
			return t, fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			tc.lines = append(tc.lines, decompile(r.Exprs, anon))
		}
		t.chains = append(t.chains, tc)
	}
	return t, nil
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

// elementTexts prints a set's elements as Plan.String does: interval
// elements are paired back into ranges.
func elementTexts(s *nftables.Set, els []nftables.SetElement) []string {
	slices.SortStableFunc(els, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return cmp.Compare(boolInt(!a.IntervalEnd), boolInt(!b.IntervalEnd)) // an end before a start at the same key
	})
	key := func(k []byte) string { return keyText(s.KeyType, k) }
	var out []string
	if !s.Interval {
		for _, e := range els {
			out = append(out, key(e.Key))
		}
		return out
	}
	var start []byte
	open := false
	flush := func(last []byte) {
		out = append(out, rangeText(s.KeyType, start, last))
		open = false
	}
	for _, e := range els {
		switch {
		case e.IntervalEnd && open:
			flush(prevKey(e.Key))
		case e.IntervalEnd:
			// nft's leading "0 end" element, and ends without a start.
		default:
			if open { // a start after a start: the first ran up to here
				flush(prevKey(e.Key))
			}
			start, open = e.Key, true
		}
	}
	if open { // open interval: up to the largest key
		flush(bytes.Repeat([]byte{0xff}, len(start)))
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func prevKey(k []byte) []byte {
	p := slices.Clone(k)
	for i := len(p) - 1; i >= 0; i-- {
		p[i]--
		if p[i] != 0xff {
			break
		}
	}
	return p
}

func keyText(t nftables.SetDatatype, k []byte) string {
	switch t.Name {
	case nftables.TypeIFName.Name:
		return fmt.Sprintf("%q", string(bytes.TrimRight(k, "\x00")))
	case nftables.TypeIPAddr.Name, nftables.TypeIP6Addr.Name:
		if a, ok := netip.AddrFromSlice(k); ok {
			return a.String()
		}
	case nftables.TypeInetService.Name:
		if len(k) == 2 {
			return fmt.Sprint(binary.BigEndian.Uint16(k))
		}
	}
	return fmt.Sprintf("0x%x", k)
}

func rangeText(t nftables.SetDatatype, first, last []byte) string {
	if t.Name == nftables.TypeIPAddr.Name && len(first) == 4 && len(last) == 4 {
		f, _ := netip.AddrFromSlice(first)
		l, _ := netip.AddrFromSlice(last)
		return Range{f, l}.String()
	}
	if bytes.Equal(first, last) {
		return keyText(t, first)
	}
	return keyText(t, first) + "-" + keyText(t, last)
}

// decompile prints the expressions of one rule in the text of the Expr
// that produced them.
func decompile(ex []expr.Any, anon map[string][]string) string {
	d := &decompiler{ex: ex, anon: anon}
	for d.i < len(d.ex) {
		d.step()
	}
	return strings.Join(d.out, " ")
}

type decompiler struct {
	ex   []expr.Any
	i    int
	out  []string
	anon map[string][]string
	l4   byte // protocol of the last l4proto match
}

func (d *decompiler) peek(k int) expr.Any {
	if d.i+k < len(d.ex) {
		return d.ex[d.i+k]
	}
	return nil
}

func (d *decompiler) emit(s string, n int) {
	d.out = append(d.out, s)
	d.i += n
}

func (d *decompiler) unknown() {
	d.emit(fmt.Sprintf("<expr %T>", d.ex[d.i]), 1)
}

func cmpText(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpNeq:
		return "!= "
	case expr.CmpOpEq:
		return ""
	}
	return fmt.Sprintf("<cmp %d> ", op)
}

// setRef prints a lookup: @name for a named set, the elements of an
// anonymous one.
func (d *decompiler) setRef(l *expr.Lookup) string {
	if els, ok := d.anon[l.SetName]; ok {
		return "{ " + strings.Join(els, ", ") + " }"
	}
	return "@" + l.SetName
}

var l4names = map[byte]string{unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}

func (d *decompiler) step() {
	switch e := d.ex[d.i].(type) {
	case *expr.Meta:
		d.meta(e)
	case *expr.Payload:
		d.payload(e)
	case *expr.Ct:
		d.ct(e)
	case *expr.Fib:
		c, ok := d.peek(1).(*expr.Cmp)
		switch {
		case ok && e.FlagSADDR && e.FlagMARK && e.FlagIIF && e.ResultOIF && e.FlagPRESENT && isZero(c.Data):
			d.emit(RPFail{}.String(), 2)
		case ok && e.FlagDADDR && e.ResultADDRTYPE && len(c.Data) == 4 && binaryutil.NativeEndian.Uint32(c.Data) == rtnLocal:
			d.emit(DaddrLocal{}.String(), 2)
		default:
			d.unknown()
		}
	case *expr.Rt:
		n := 1
		if _, ok := d.peek(1).(*expr.Byteorder); ok {
			n++
		}
		if x, ok := d.peek(n).(*expr.Exthdr); ok && e.Key == expr.RtTCPMSS && x.Op == expr.ExthdrOpTcpopt && x.SourceRegister != 0 {
			d.emit(ClampMSS{}.String(), n+1)
			return
		}
		d.unknown()
	case *expr.Exthdr:
		// The library does not read rt and byteorder back: the write alone.
		if e.Op == expr.ExthdrOpTcpopt && e.SourceRegister != 0 && e.Type == 2 {
			d.emit(ClampMSS{}.String(), 1)
			return
		}
		d.unknown()
	case *expr.Limit:
		if e.Type == expr.LimitTypePkts && e.Unit == expr.LimitTimeSecond {
			d.emit(Limit{Rate: uint32(e.Rate), Burst: e.Burst, Over: e.Over}.String(), 1)
			return
		}
		d.unknown()
	case *expr.Objref:
		if e.Type == int(nftables.ObjTypeCounter) {
			d.emit(Counter{Name: e.Name}.String(), 1)
			return
		}
		d.unknown()
	case *expr.Counter:
		d.emit(fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes), 1)
	case *expr.Masq:
		d.emit(Masquerade{}.String(), 1)
	case *expr.Immediate:
		d.dnat(e)
	case *expr.Reject:
		switch {
		case e.Type == unix.NFT_REJECT_ICMPX_UNREACH && e.Code == unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED:
			d.emit(Verdict{Kind: Reject}.String(), 1)
		case e.Type == unix.NFT_REJECT_TCP_RST:
			d.emit(Verdict{Kind: Reset}.String(), 1)
		default:
			d.emit(fmt.Sprintf("reject type %d code %d", e.Type, e.Code), 1)
		}
	case *expr.Verdict:
		switch e.Kind {
		case expr.VerdictAccept:
			d.emit(Accept, 1)
		case expr.VerdictDrop:
			d.emit(Drop, 1)
		case expr.VerdictReturn:
			d.emit(Return, 1)
		case expr.VerdictJump:
			d.emit("jump "+e.Chain, 1)
		case expr.VerdictGoto:
			d.emit("goto "+e.Chain, 1)
		default:
			d.emit(fmt.Sprintf("<verdict %d>", e.Kind), 1)
		}
	default:
		d.unknown()
	}
}

func isZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

func (d *decompiler) meta(e *expr.Meta) {
	if e.SourceRegister {
		d.unknown()
		return
	}
	next := d.peek(1)
	switch e.Key {
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
		key := ifKey(e.Key == expr.MetaKeyOIFNAME)
		switch n := next.(type) {
		case *expr.Cmp:
			d.emit(fmt.Sprintf("%s %s%q", key, cmpText(n.Op), string(bytes.TrimRight(n.Data, "\x00"))), 2)
			return
		case *expr.Lookup:
			d.emit(key+" "+d.setRef(n), 2)
			return
		}
	case expr.MetaKeyNFPROTO:
		c, ok := next.(*expr.Cmp)
		if !ok || len(c.Data) != 1 {
			break
		}
		// Implicit before an address match or an ICMP type: nft adds it.
		after := d.peek(2)
		if p, ok := after.(*expr.Payload); ok && p.Base == expr.PayloadBaseNetworkHeader {
			d.i += 2
			return
		}
		if m, ok := after.(*expr.Meta); ok && m.Key == expr.MetaKeyL4PROTO {
			if c2, ok := d.peek(3).(*expr.Cmp); ok && len(c2.Data) == 1 && c2.Data[0] == unix.IPPROTO_ICMP {
				if _, ok := d.peek(4).(*expr.Payload); ok {
					d.i += 2
					return
				}
			}
		}
		name := map[byte]string{unix.NFPROTO_IPV4: "ipv4", unix.NFPROTO_IPV6: "ipv6"}[c.Data[0]]
		if name != "" {
			d.emit("meta nfproto "+name, 2)
			return
		}
	case expr.MetaKeyL4PROTO:
		c, ok := next.(*expr.Cmp)
		if !ok || len(c.Data) != 1 || l4names[c.Data[0]] == "" {
			break
		}
		d.l4 = c.Data[0]
		if p, ok := d.peek(2).(*expr.Payload); ok && p.Base == expr.PayloadBaseTransportHeader {
			d.i += 2 // implicit in "tcp dport", "icmp type", "tcp flags"
			return
		}
		d.emit(L4{Proto: l4names[c.Data[0]]}.String(), 2)
		return
	}
	d.unknown()
}

func (d *decompiler) payload(e *expr.Payload) {
	next := d.peek(1)
	switch e.Base {
	case expr.PayloadBaseNetworkHeader:
		var key string
		switch {
		case e.Len == 4 && (e.Offset == 12 || e.Offset == 16):
			key = addrKey(e.Offset == 16, false)
		case e.Len == 16 && (e.Offset == 8 || e.Offset == 24):
			key = addrKey(e.Offset == 24, true)
		default:
			d.unknown()
			return
		}
		bits := int(e.Len) * 8
		n := 1
		if b, ok := next.(*expr.Bitwise); ok && isZero(b.Xor) {
			bits = 0
			for _, x := range b.Mask {
				bits += onesCount(x)
			}
			n++
		}
		switch c := d.peek(n).(type) {
		case *expr.Cmp:
			if a, ok := netip.AddrFromSlice(c.Data); ok {
				d.emit(fmt.Sprintf("%s %s%s", key, cmpText(c.Op), prefixText(netip.PrefixFrom(a, bits))), n+1)
				return
			}
		case *expr.Lookup:
			if n == 1 {
				d.emit(key+" "+d.setRef(c), 2)
				return
			}
		case *expr.Dynset:
			lim, ok := meterLimit(c)
			if n == 1 && ok && key == addrKey(false, false) {
				d.emit(Meter{Set: c.SetName, Limit: lim}.String(), 2)
				return
			}
		}
	case expr.PayloadBaseTransportHeader:
		proto := l4names[d.l4]
		switch {
		case e.Len == 2 && (e.Offset == 0 || e.Offset == 2) && (proto == "tcp" || proto == "udp"):
			key := proto + " dport "
			if e.Offset == 0 {
				key = proto + " sport "
			}
			c1, _ := next.(*expr.Cmp)
			c2, _ := d.peek(2).(*expr.Cmp)
			switch {
			case c1 != nil && c1.Op == expr.CmpOpEq && len(c1.Data) == 2:
				d.emit(key+fmt.Sprint(binary.BigEndian.Uint16(c1.Data)), 2)
				return
			case c1 != nil && c2 != nil && c1.Op == expr.CmpOpGte && c2.Op == expr.CmpOpLte:
				d.emit(key+PortRange{binary.BigEndian.Uint16(c1.Data), binary.BigEndian.Uint16(c2.Data)}.String(), 3)
				return
			}
			if l, ok := next.(*expr.Lookup); ok {
				d.emit(key+d.setRef(l), 2)
				return
			}
		case e.Len == 1 && e.Offset == 0 && proto == "icmp":
			if c, ok := next.(*expr.Cmp); ok && len(c.Data) == 1 && c.Op == expr.CmpOpEq {
				if c.Data[0] == 8 {
					d.emit(ICMPEcho{}.String(), 2)
				} else {
					d.emit(fmt.Sprintf("icmp type %d", c.Data[0]), 2)
				}
				return
			}
		case e.Len == 1 && e.Offset == 13 && proto == "tcp":
			b, ok1 := next.(*expr.Bitwise)
			c, ok2 := d.peek(2).(*expr.Cmp)
			if ok1 && ok2 && len(b.Mask) == 1 && len(c.Data) == 1 && c.Data[0] == 0x02 {
				switch b.Mask[0] {
				case 0x06:
					d.emit(TCPSyn{}.String(), 3)
					return
				case 0x17:
					d.emit(TCPSyn{New: true}.String(), 3)
					return
				}
			}
		}
	}
	d.unknown()
}

// meterLimit reads back the dynset of a Meter: an update of a set with one
// packet limit per second.
func meterLimit(e *expr.Dynset) (Limit, bool) {
	if e.Operation != unix.NFT_DYNSET_OP_UPDATE || e.SrcRegKey != 1 || e.SrcRegData != 0 || e.Invert || len(e.Exprs) != 1 {
		return Limit{}, false
	}
	l, ok := e.Exprs[0].(*expr.Limit)
	if !ok || l.Type != expr.LimitTypePkts || l.Unit != expr.LimitTimeSecond {
		return Limit{}, false
	}
	return Limit{Rate: uint32(l.Rate), Burst: l.Burst, Over: l.Over}, true
}

func onesCount(b byte) int { return bits.OnesCount8(b) }

var ctStateOrder = []string{"invalid", "established", "related", "new", "untracked"}

func (d *decompiler) ct(e *expr.Ct) {
	b, ok := d.peek(1).(*expr.Bitwise)
	if e.SourceRegister || !ok || len(b.Mask) != 4 || len(b.Xor) != 4 {
		d.unknown()
		return
	}
	mask, xor := binaryutil.NativeEndian.Uint32(b.Mask), binaryutil.NativeEndian.Uint32(b.Xor)
	switch next := d.peek(2).(type) {
	case *expr.Cmp:
		if len(next.Data) != 4 {
			break
		}
		v := binaryutil.NativeEndian.Uint32(next.Data)
		switch {
		case e.Key == expr.CtKeySTATE && next.Op == expr.CmpOpNeq && v == 0 && xor == 0:
			var names []string
			for _, s := range ctStateOrder {
				if mask&ctStateBits[s] != 0 {
					names = append(names, s)
				}
			}
			d.emit(CtState{States: names}.String(), 3)
			return
		case e.Key == expr.CtKeySTATUS && next.Op == expr.CmpOpNeq && v == 0 && mask == ipsDstNAT:
			d.emit(CtDNAT{}.String(), 3)
			return
		case e.Key == expr.CtKeyMARK && xor == 0:
			d.emit(ctMarkText(mask, next.Op, v), 3)
			return
		}
	case *expr.Ct:
		if e.Key == expr.CtKeyMARK && next.Key == expr.CtKeyMARK && next.SourceRegister {
			d.emit(fmt.Sprintf("ct mark set ct mark and %#x or %#x", mask, xor), 3)
			return
		}
	case *expr.Meta:
		if e.Key == expr.CtKeyMARK && next.Key == expr.MetaKeyMARK && next.SourceRegister && xor == 0 {
			d.emit(fmt.Sprintf("meta mark set ct mark and %#x", mask), 3)
			return
		}
	}
	d.unknown()
}

func ctMarkText(mask uint32, op expr.CmpOp, v uint32) string {
	return fmt.Sprintf("ct mark and %#x %s %s", mask, map[bool]string{true: "==", false: "!="}[op == expr.CmpOpEq], hexOrZero(v))
}

func hexOrZero(v uint32) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%#x", v)
}

func (d *decompiler) dnat(e *expr.Immediate) {
	if e.Register != 1 || len(e.Data) != 4 {
		d.unknown()
		return
	}
	a, _ := netip.AddrFromSlice(e.Data)
	n := 1
	var port uint16
	if p, ok := d.peek(1).(*expr.Immediate); ok && p.Register == 2 && len(p.Data) == 2 {
		port = binary.BigEndian.Uint16(p.Data)
		n++
	}
	if nat, ok := d.peek(n).(*expr.NAT); ok && nat.Type == expr.NATTypeDestNAT {
		d.emit(DNAT{Addr: a, Port: port}.String(), n+1)
		return
	}
	d.unknown()
}
