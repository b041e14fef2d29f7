package dnsfilter

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/resolver"
)

const (
	// ednsSize is the UDP payload size we advertise and accept at most:
	// the DNS flag day 2020 value, which avoids IP fragmentation.
	ednsSize = 1232
	// blockTTL is the TTL of synthesised answers (block page, NODATA).
	blockTTL = 60
	// queryTimeout bounds the work for one query.
	queryTimeout = 4 * time.Second
)

// zoneHandler serves one zone's listener.
type zoneHandler struct {
	f    *Filter
	zone string
}

// ServeDNS implements dns.Handler.
func (h *zoneHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	h.f.serve(h.zone, w, req)
}

func clientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (f *Filter) serve(zone string, w dns.ResponseWriter, req *dns.Msg) {
	client := clientAddr(w.RemoteAddr())
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	zm := f.zoneMetrics(zone)
	if !f.limiter.allow(client) {
		// Over the limit: no answer, so a flood is not amplified.
		zm.ratelimited.Inc()
		if !udp {
			w.Close()
		}
		return
	}
	zm.queries.Inc()
	resp, _ := f.answer(zone, client, req, false)
	if resp == nil {
		return
	}
	if udp {
		resp.Truncate(udpSize(req))
	}
	zm.response(resp.Rcode)
	_ = w.WriteMsg(resp)
}

// udpSize is the largest UDP answer the client accepts.
func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
	}
	return dns.MinMsgSize
}

// answer computes the response to req from a client of zone; nil means no
// answer at all. With fast set it does not wait for upstreams: a query
// that needs them returns slow, to be answered again without fast from a
// goroutine of its own.
func (f *Filter) answer(zone string, client netip.Addr, req *dns.Msg, fast bool) (m *dns.Msg, slow bool) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	opt := req.IsEdns0()
	switch {
	case req.Response:
		return nil, false // never answer answers (reflection loops)
	case opt != nil && opt.Version() != 0:
		resp.Rcode = dns.RcodeBadVers
		return finish(req, resp, nil), false
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		return finish(req, resp, nil), false
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return finish(req, resp, nil), false
	case req.Question[0].Qclass != dns.ClassINET:
		resp.Rcode = dns.RcodeRefused
		return finish(req, resp, nil), false
	}
	q := req.Question[0]
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		resp.Rcode = dns.RcodeRefused
		return finish(req, resp, nil), false
	}
	name := queryName(q.Name)
	if m := f.local(zone, req, resp, name); m != nil {
		return m, false // never leaves the box (local.go)
	}
	pol := f.policy.Load()
	zp := pol.zones[zone]
	var pr *profile
	if zp != nil {
		pr = zp.profile
	}
	v := pr.decide(name, pol.lists)
	switch v.action {
	case nodata:
		return finish(req, resp, nil), false
	case block:
		return f.blocked(req, resp, zp, client, name, v), false
	case safesearch:
		return f.safeSearch(req, resp, zp, v, fast)
	}
	do := opt != nil && opt.Do()
	res, err, ok := f.resolve(dns.Question{Name: q.Name, Qtype: q.Qtype, Qclass: q.Qclass}, do, req.CheckingDisabled, fast)
	if !ok {
		return nil, true
	}
	if err != nil {
		resp.Rcode = dns.RcodeServerFailure
		return finish(req, resp, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "no upstream resolver answered"}), false
	}
	up := res.Msg
	if !v.explicit && pr != nil {
		// CNAME cloaking: an allowed name that aliases a blocked one is
		// blocked for the target's reason.
		for _, rr := range up.Answer {
			if c, ok := rr.(*dns.CNAME); ok {
				if tv := pr.decide(queryName(c.Target), pol.lists); tv.action == block {
					return f.blocked(req, resp, zp, client, name, tv), false
				}
			}
		}
	}
	resp.Rcode = up.Rcode
	resp.AuthenticatedData = up.AuthenticatedData
	resp.Answer, resp.Ns, resp.Extra = up.Answer, up.Ns, stripOPT(up.Extra)
	matchCase(resp, q.Name)
	var ede *dns.EDNS0_EDE
	if res.Stale {
		code := dns.ExtendedErrorCodeStaleAnswer
		if up.Rcode == dns.RcodeNameError {
			code = dns.ExtendedErrorCodeStaleNXDOMAINAnswer
		}
		ede = &dns.EDNS0_EDE{InfoCode: code, ExtraText: "upstream resolvers unreachable: answer from cache"}
	}
	return finish(req, resp, ede), false
}

// blocked builds the block response, counts it and logs it if the
// privacy settings allow.
func (f *Filter) blocked(req, resp *dns.Msg, zp *zonePolicy, client netip.Addr, name string, v verdict) *dns.Msg {
	q := req.Question[0]
	profileName := ""
	blockPage := false
	if zp != nil && zp.profile != nil {
		profileName = zp.profile.Name
		blockPage = zp.profile.BlockPage
	}
	now := f.now()
	f.zoneMetrics(zoneName(zp)).blocked(v.reason)
	f.stats.add(now, zoneName(zp), v.reason)
	f.qlog.record(now, zoneName(zp), client, name, dns.TypeToString[q.Qtype], v.reason)
	resp.Answer, resp.Ns, resp.Extra = nil, nil, nil
	switch {
	case blockPage && v.reason != "bypass":
		// The block page's address for A queries; other types get an
		// empty answer, so the browser falls back to IPv4 and the page.
		if q.Qtype == dns.TypeA && zp.addr.Is4() {
			resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: blockTTL}, A: zp.addr.AsSlice()}}
		}
	default:
		resp.Rcode = dns.RcodeNameError
	}
	text := ""
	if zp != nil && zp.profile != nil {
		text = zp.profile.ede[v.reason]
	}
	if text == "" {
		text = edeText(v, profileName)
	}
	return finish(req, resp, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: text})
}

// safeSearch answers a search engine's host with a CNAME to its safe
// endpoint and the endpoint's records for the same type, so every record
// type (A, AAAA, HTTPS) leads to the safe endpoint.
func (f *Filter) safeSearch(req, resp *dns.Msg, zp *zonePolicy, v verdict, fast bool) (*dns.Msg, bool) {
	q := req.Question[0]
	opt := req.IsEdns0()
	res, err, ok := f.resolve(dns.Question{Name: v.rw.target, Qtype: q.Qtype, Qclass: q.Qclass}, opt != nil && opt.Do(), req.CheckingDisabled, fast)
	if !ok {
		return nil, true
	}
	f.m.safesearch.WithLabelValues(zoneName(zp), v.rw.engine).Inc()
	if err != nil {
		resp.Rcode = dns.RcodeServerFailure
		return finish(req, resp, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "safe search endpoint unreachable"}), false
	}
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: blockTTL}, Target: v.rw.target}
	resp.Rcode = res.Msg.Rcode
	resp.Answer = append([]dns.RR{cname}, res.Msg.Answer...)
	resp.Ns = res.Msg.Ns
	return finish(req, resp, nil), false
}

// resolve asks the resolver; with fast set only its cache (ok false: the
// answer is not cached).
func (f *Filter) resolve(q dns.Question, do, cd, fast bool) (res resolver.Result, err error, ok bool) {
	if fast {
		res, ok = f.res.Cached(q, do, cd)
		return res, nil, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	res, err = f.res.Resolve(ctx, q, do, cd)
	return res, err, true
}

func zoneName(zp *zonePolicy) string {
	if zp == nil {
		return ""
	}
	return zp.name
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

// matchCase gives answer records owned by the query name the client's
// spelling of it (cached answers may come from a query in another case;
// some clients check the case they randomised, "0x20").
func matchCase(m *dns.Msg, qname string) {
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Name != qname && strings.EqualFold(h.Name, qname) {
			h.Name = qname
		}
	}
}

// finish adds our OPT record (when the client used EDNS) carrying the
// Extended DNS Error, if any. The question and ID are the client's, as
// SetReply copied them.
func finish(req, resp *dns.Msg, ede *dns.EDNS0_EDE) *dns.Msg {
	// Name compression pays for answers of several records; for one it
	// saves a few bytes and costs a map per answer.
	resp.Compress = len(resp.Answer)+len(resp.Ns)+len(resp.Extra) > 1
	if ropt := req.IsEdns0(); ropt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(ednsSize)
		opt.SetDo(ropt.Do())
		if ede != nil {
			opt.Option = append(opt.Option, ede)
		}
		if resp.Rcode > 0xF {
			opt.SetExtendedRcode(uint16(resp.Rcode))
		}
		resp.Extra = append(resp.Extra, opt)
	}
	return resp
}
