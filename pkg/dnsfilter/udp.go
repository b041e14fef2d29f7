package dnsfilter

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// udpBatch is how many datagrams one system call reads or writes.
const udpBatch = 32

// serveUDP answers queries on one UDP socket. Instead of a goroutine per
// datagram (miekg/dns's server), it reads datagrams in batches (recvmmsg),
// answers those it can at once (blocked names, cached answers, errors),
// and sends those answers in one batch (sendmmsg); only queries that wait
// for an upstream get a goroutine. System calls are most of a cached
// answer's cost: batching them roughly doubles throughput.
func (f *Filter) serveUDP(zone string, conn net.PacketConn) error {
	pc := ipv4.NewPacketConn(conn) // Read/WriteBatch work for any UDP socket
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	out := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, ednsSize+512)
	}
	zm := f.zoneMetrics(zone)
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		out = out[:0]
		for i := range n {
			addr, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			pkt := in[i].Buffers[0][:in[i].N]
			b := f.handleUDP(zone, zm, conn, pkt, addr, outBufs[len(out)][:0])
			if b != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: addr})
			}
		}
		for len(out) > 0 {
			w, err := pc.WriteBatch(out, 0)
			if err != nil {
				break // the client will retry; a dead socket shows in ReadBatch
			}
			out = out[w:]
		}
	}
}

// handleUDP answers one datagram: the packed answer, written into buf, or
// nil when there is none to send now (dropped, or handed to a goroutine
// that will answer once upstreams have).
func (f *Filter) handleUDP(zone string, zm *zoneCounters, conn net.PacketConn, pkt []byte, addr *net.UDPAddr, buf []byte) []byte {
	if len(pkt) < 12 {
		return nil // not even a header: any answer would only amplify
	}
	ip, _ := netip.AddrFromSlice(addr.IP)
	client := ip.Unmap()
	if !f.limiter.allow(client) {
		zm.ratelimited.Inc()
		return nil
	}
	zm.queries.Inc()
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		if req.Response {
			return nil
		}
		// The header decoded (miekg/dns fills it first): say FORMERR.
		resp := &dns.Msg{MsgHdr: dns.MsgHdr{Id: req.Id, Response: true, Opcode: req.Opcode, Rcode: dns.RcodeFormatError}}
		zm.response(dns.RcodeFormatError)
		b, _ := resp.PackBuffer(buf)
		return b
	}
	if b, ok := f.fastPath(zone, client, req, pkt, buf); ok {
		zm.response(int(b[3] & 0xf))
		return b
	}
	resp, slow := f.answer(zone, client, req, true)
	if slow {
		select {
		case f.inflight <- struct{}{}:
		default:
			// Too many queries already wait for upstreams: drop this one
			// (the client retries) rather than pile up goroutines.
			f.m.overload.Inc()
			return nil
		}
		go func() {
			defer func() { <-f.inflight }()
			resp, _ := f.answer(zone, client, req, false)
			if b := f.packUDP(zm, req, resp, nil); b != nil {
				conn.WriteTo(b, addr)
			}
		}()
		return nil
	}
	return f.packUDP(zm, req, resp, buf)
}

func (f *Filter) packUDP(zm *zoneCounters, req, resp *dns.Msg, buf []byte) []byte {
	if resp == nil {
		return nil
	}
	resp.Truncate(udpSize(req))
	zm.response(resp.Rcode)
	b, err := resp.PackBuffer(buf)
	if err != nil {
		return nil
	}
	return b
}

// fastPath writes the two most common answers straight in wire format:
// NXDOMAIN for a blocked name, and cached answers. ok is false whenever
// anything is unusual (another verdict, a CNAME to check, EDNS options,
// too large for the client): the general path then answers, the same way
// (TestFastPathsMatchGeneralPath).
func (f *Filter) fastPath(zone string, client netip.Addr, req *dns.Msg, pkt, buf []byte) ([]byte, bool) {
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 || req.Question[0].Qclass != dns.ClassINET {
		return nil, false
	}
	opt := req.IsEdns0()
	if opt != nil && (opt.Version() != 0 || len(opt.Option) > 0) {
		return nil, false
	}
	q := req.Question[0]
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return nil, false
	}
	// The question as the client sent it: header, then name and 4 bytes.
	qend, ok := questionEnd(pkt)
	if !ok {
		return nil, false
	}
	pol := f.policy.Load()
	zp := pol.zones[zone]
	var pr *profile
	if zp != nil {
		pr = zp.profile
	}
	name := queryName(q.Name)
	v := pr.decide(name, pol.lists)
	switch {
	case v.action == block && pr != nil && (!pr.BlockPage || v.reason == "bypass"):
		return f.blockedWire(zp, client, req, name, v, pkt[:qend], buf[:0]), true
	case v.action == pass:
		return f.cachedWire(pr, pol, v, req, opt, pkt, qend, buf)
	}
	return nil, false
}

// blockedWire is the NXDOMAIN answer of Filter.blocked, written directly:
// the client's header and question, and an OPT record carrying the EDE if
// the client sent one.
func (f *Filter) blockedWire(zp *zonePolicy, client netip.Addr, req *dns.Msg, name string, v verdict, question, out []byte) []byte {
	now := f.now()
	zone := zoneName(zp)
	f.zoneMetrics(zone).blocked(v.reason)
	f.stats.add(now, zone, v.reason)
	f.qlog.record(now, zone, client, name, dns.TypeToString[req.Question[0].Qtype], v.reason)
	out = append(out, question...)
	flags := uint16(1<<15) | uint16(1<<7) | uint16(dns.RcodeNameError)
	if req.RecursionDesired {
		flags |= 1 << 8
	}
	if req.CheckingDisabled {
		flags |= 1 << 4
	}
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	if opt := req.IsEdns0(); opt != nil {
		text := zp.profile.ede[v.reason]
		if text == "" {
			text = edeText(v, zp.profile.Name)
		}
		out = appendOPT(out, opt.Do(), dns.ExtendedErrorCodeBlocked, text)
	}
	return out
}

// appendOPT appends our OPT record (UDP size, DO echoed, an EDE option if
// text is not empty) and counts it in ARCOUNT.
func appendOPT(out []byte, do bool, code uint16, text string) []byte {
	var ttl uint32
	if do {
		ttl = 1 << 15
	}
	rdlen := 0
	if text != "" {
		rdlen = 4 + 2 + len(text)
	}
	out = append(out, 0, 0, 41, byte(ednsSize>>8), byte(ednsSize&0xff), byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl),
		byte(rdlen>>8), byte(rdlen))
	if text != "" {
		n := 2 + len(text)
		out = append(out, 0, byte(dns.EDNS0EDE), byte(n>>8), byte(n), byte(code>>8), byte(code))
		out = append(out, text...)
	}
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	return out
}

// cachedWire is the fast path for cached answers: the resolver's stored
// wire-format answer, with the client's ID, flags and question bytes (so
// the case it chose is kept, and answer names compressed to it follow),
// and an OPT record if the client sent one.
func (f *Filter) cachedWire(pr *profile, pol *policy, v verdict, req *dns.Msg, opt *dns.OPT, pkt []byte, qend int, buf []byte) ([]byte, bool) {
	q := req.Question[0]
	do := opt != nil && opt.Do()
	out, cnames, ok := f.res.CachedWire(q, do, req.CheckingDisabled, buf[:0])
	if !ok {
		return nil, false
	}
	if !v.explicit && pr != nil {
		for _, c := range cnames {
			if pr.decide(c, pol.lists).action == block {
				return nil, false
			}
		}
	}
	if len(out) < qend || binary.BigEndian.Uint16(out[4:]) != 1 {
		return nil, false
	}
	copy(out[0:2], pkt[0:2]) // ID
	// Flags: QR, the client's opcode (QUERY) and RD and CD, RA, and the
	// upstream's AD and RCODE.
	up := binary.BigEndian.Uint16(out[2:])
	flags := uint16(1<<15) | uint16(1<<7) | up&(1<<5) | up&0xf
	if req.RecursionDesired {
		flags |= 1 << 8
	}
	if req.CheckingDisabled {
		flags |= 1 << 4
	}
	binary.BigEndian.PutUint16(out[2:], flags)
	if !equalFoldBytes(out[12:qend], pkt[12:qend]) {
		return nil, false
	}
	copy(out[12:qend], pkt[12:qend])
	if opt != nil {
		out = appendOPT(out, do, 0, "")
	}
	if len(out) > udpSize(req) {
		return nil, false // needs truncation: the general path does it
	}
	return out, true
}

// questionEnd returns the offset after the first question of a query
// whose name is not compressed.
func questionEnd(pkt []byte) (int, bool) {
	off := 12
	for off < len(pkt) {
		l := int(pkt[off])
		if l == 0 {
			off++
			if off+4 > len(pkt) {
				return 0, false
			}
			return off + 4, true
		}
		if l&0xc0 != 0 {
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
