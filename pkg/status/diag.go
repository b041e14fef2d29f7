package status

import (
	"context"
	"errors"
	"fmt"
	"html"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"passerelle/pkg/netdiag"
)

// Pinner pins the box's own sockets to one uplink, for the diagnostics
// the technician runs "through" a link (cmd/passerelle adapts the uplink
// manager: the uplink's interface and routing mark).
type Pinner interface {
	// Pin returns the socket control that makes a socket's traffic
	// leave through the named uplink, or why it cannot.
	Pin(uplink string) (func(network, address string, c syscall.RawConn) error, error)
}

// Diagnostic kinds of the form.
const (
	diagDNS        = "dns"
	diagHTTP       = "http"
	diagPing       = "ping"
	diagTraceroute = "traceroute"
)

func (s *Server) statusZones() []string {
	var out []string
	if c := s.cfg(); c != nil {
		for _, z := range c.Zones {
			out = append(out, z.Name)
		}
	}
	return out
}

func (s *Server) uplinkNames() []string {
	var out []string
	for _, u := range s.o.Source.Uplinks() {
		out = append(out, u.Name)
	}
	return out
}

func (s *Server) diagData() map[string]any {
	return map[string]any{"Zones": s.statusZones(), "Uplinks": s.uplinkNames()}
}

func (s *Server) diagForm(w http.ResponseWriter, r *http.Request, sess *session) {
	s.page(w, "diag", sess, s.diagData())
}

// diag runs one diagnostic: a DNS lookup as a zone's clients see it, with
// the filter's explanation; or, through the chosen uplink, an HTTP check,
// a ping or a traceroute (the last two streamed as they come).
func (s *Server) diag(w http.ResponseWriter, r *http.Request, sess *session) {
	t := tr(s.lang())
	data := s.diagData()
	kind := r.PostFormValue("kind")
	target := strings.TrimSpace(r.PostFormValue("target"))
	zone, up := r.PostFormValue("zone"), r.PostFormValue("uplink")
	data["Kind"], data["Target"], data["Zone"], data["Uplink"] = kind, target, zone, up
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		data["Error"] = msg
		s.page(w, "diag", sess, data)
	}
	if ok, after := s.diags.allow(clientAddr(r)); !ok {
		w.Header().Set("Retry-After", retryAfter(after))
		fail(http.StatusTooManyRequests, t.s("diag-limited"))
		return
	}
	if len(target) > 255 || target == "" {
		fail(http.StatusBadRequest, t.s("diag-target"))
		return
	}
	switch kind {
	case diagDNS:
		ctx, cancel := context.WithTimeout(r.Context(), 6*time.Second)
		defer cancel()
		why := s.o.Source.Why(zone, target)
		data["Why"] = why
		data["Explain"] = Explain(why, s.lang())
		if why.Verdict != "invalid" && why.Verdict != "unknown-zone" {
			addrs, err := s.lookup(ctx, zone, why.Name)
			data["Addrs"], data["LookupErr"] = addrs, errText(err)
		}
		s.page(w, "diag", sess, data)
	case diagHTTP, diagPing, diagTraceroute:
		if !s.validUplink(up) {
			fail(http.StatusBadRequest, t.f("diag-uplink", up))
			return
		}
		if kind == diagHTTP {
			s.httpCheck(r.Context(), data, up, target)
			s.page(w, "diag", sess, data)
			return
		}
		// One ICMP diagnostic at a time for the whole box: each holds a
		// raw socket that sees every ICMP message of its link.
		select {
		case s.icmpBusy <- struct{}{}:
			defer func() { <-s.icmpBusy }()
		default:
			w.Header().Set("Retry-After", "10")
			fail(http.StatusTooManyRequests, t.s("diag-busy"))
			return
		}
		s.icmpDiag(w, r, sess, data, kind, up, target)
	default:
		fail(http.StatusBadRequest, t.s("diag-kind"))
	}
}

func (s *Server) validUplink(name string) bool {
	for _, u := range s.uplinkNames() {
		if u == name {
			return true
		}
	}
	return false
}

// pin is the socket control of the uplink: nil when the page has no
// Pinner (the box's routing decides).
func (s *Server) pin(uplink string) (func(network, address string, c syscall.RawConn) error, error) {
	if s.o.Uplinks == nil {
		return nil, nil
	}
	return s.o.Uplinks.Pin(uplink)
}

// errRefusedTarget is a target a diagnostic through an uplink must not
// reach: the school's own networks and the box itself are not "out there",
// and a diagnostic is no way to scan the pupils' zones.
var errRefusedTarget = errors.New("refused target")

// checkTarget says why a diagnostic through an uplink may not go to a.
func (s *Server) checkTarget(a netip.Addr) error {
	t := tr(s.lang())
	a = a.Unmap()
	switch {
	case !a.Is4():
		return fmt.Errorf("%w: %s", errRefusedTarget, t.f("target-not-ipv4", a))
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}), a.IsLinkLocalUnicast():
		return fmt.Errorf("%w: %s", errRefusedTarget, t.f("target-not-internet", a))
	}
	if c := s.cfg(); c != nil {
		for _, z := range c.Zones {
			if z.Subnet.Contains(a) {
				return fmt.Errorf("%w: %s", errRefusedTarget, t.f("target-in-zone", a, z.Name))
			}
		}
	}
	return nil
}

// validHost says whether name is a host name (RFC 1123 labels) or an
// IPv4 address; nothing else reaches a socket or a resolver.
func validHost(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// resolveTarget turns the form's target into one address allowed through
// an uplink: an IPv4 literal as is, a name asked of the configured
// upstream resolvers through that uplink.
func (s *Server) resolveTarget(ctx context.Context, control func(string, string, syscall.RawConn) error, target string) (netip.Addr, error) {
	t := tr(s.lang())
	if !validHost(target) {
		return netip.Addr{}, errors.New(t.s("diag-bad-host"))
	}
	if a, err := netip.ParseAddr(target); err == nil {
		if err := s.checkTarget(a); err != nil {
			return netip.Addr{}, err
		}
		return a.Unmap(), nil
	}
	addrs, err := s.resolver(control).LookupNetIP(ctx, "ip4", target)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", target, err)
	}
	for _, a := range addrs {
		if err := s.checkTarget(a); err != nil {
			return netip.Addr{}, err
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("%s: no IPv4 address", target)
	}
	return addrs[0].Unmap(), nil
}

// resolver asks the configuration's upstream resolvers (dns.upstreams),
// its sockets pinned by control: a name looked up "through Renater" is
// asked through Renater.
func (s *Server) resolver(control func(string, string, syscall.RawConn) error) *net.Resolver {
	var ups []string
	if c := s.cfg(); c != nil {
		for _, u := range c.DNS.Upstreams {
			ups = append(ups, u.Address.String())
		}
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if len(ups) > 0 {
			addr = ups[rand.IntN(len(ups))]
		}
		d := net.Dialer{Control: control}
		return d.DialContext(ctx, network, addr)
	}}
}

// httpCheck fetches the target through the uplink and says the status or
// the error.
func (s *Server) httpCheck(ctx context.Context, data map[string]any, up, target string) {
	ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	u := target
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = "https://" + u
	}
	start := time.Now()
	err := func() error {
		pu, err := url.Parse(u)
		if err != nil || !validHost(pu.Hostname()) {
			return errors.New(tr(s.lang()).s("diag-bad-host"))
		}
		client := s.o.HTTPClient
		if client == nil {
			control, err := s.pin(up)
			if err != nil {
				return err
			}
			client = s.pinnedClient(control)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		data["HTTPStatus"] = resp.Status
		return nil
	}()
	data["HTTPErr"], data["Took"] = errText(err), time.Since(start).Round(time.Millisecond)
}

// pinnedClient is an HTTP client whose connections and name lookups leave
// through one uplink, and which refuses the school's own addresses.
func (s *Server) pinnedClient(control func(string, string, syscall.RawConn) error) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		a, err := s.resolveTarget(ctx, control, host)
		if err != nil {
			return nil, err
		}
		d := net.Dialer{Control: control}
		return d.DialContext(ctx, "tcp4", net.JoinHostPort(a.String(), port))
	}
	return &http.Client{
		Timeout:       8 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DialContext: dial, Proxy: nil, TLSHandshakeTimeout: 5 * time.Second, DisableKeepAlives: true},
	}
}

// icmpDiag runs a ping or a traceroute and streams the page: the form and
// the heading first, then one line per answer as it comes (a plain HTML
// response read progressively by the browser; no script), then the
// summary.
func (s *Server) icmpDiag(w http.ResponseWriter, r *http.Request, sess *session, data map[string]any, kind, up, target string) {
	t := tr(s.lang())
	ctx, cancel := context.WithTimeout(r.Context(), 25*time.Second)
	defer cancel()
	control, err := s.pin(up)
	var addr netip.Addr
	if err == nil {
		addr, err = s.resolveTarget(ctx, control, target)
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		data["Error"] = err.Error()
		s.page(w, "diag", sess, data)
		return
	}
	s.log.Info("status page: diagnostic", "event", "status-diagnostic", "kind", kind, "uplink", up, "target", addr.String(), "client", clientAddr(r).String())
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	data["Streaming"] = true
	data["Heading"] = t.f("diag-"+kind+"-head", target, addr, up)
	s.page(w, "diag-stream-head", sess, data)
	flush()
	line := func(text string) {
		fmt.Fprintf(w, "%s\n", html.EscapeString(text))
		flush()
	}
	o := netdiag.Options{Control: control}
	var summary string
	switch kind {
	case diagPing:
		sum, err := netdiag.Ping(ctx, addr, o, func(rp netdiag.Reply) { line(replyText(t, rp, false)) })
		if err != nil {
			line(t.f("diag-error", err))
		}
		summary = t.f("ping-summary", sum.Sent, sum.Received, int(sum.Loss()*100+0.5))
		if sum.Received > 0 {
			summary += t.f("ping-rtt", ms(sum.Min), ms(sum.Avg), ms(sum.Max))
		}
	case diagTraceroute:
		reached, err := netdiag.Traceroute(ctx, addr, o, func(rp netdiag.Reply) { line(replyText(t, rp, true)) })
		if err != nil {
			line(t.f("diag-error", err))
		}
		summary = t.f("trace-not-reached", addr)
		if reached {
			summary = t.f("trace-reached", addr)
		}
	}
	data["Summary"] = summary
	s.render(w, "diag-stream-foot", data)
}

// replyText is one line of a ping or a traceroute.
func replyText(t lang, r netdiag.Reply, trace bool) string {
	prefix := t.f("ping-seq", r.Seq)
	if trace {
		prefix = fmt.Sprintf("%2d", r.TTL)
	}
	switch r.Kind {
	case "reply", "time-exceeded":
		rtt := msPrecise(r.RTT)
		if t.lang == "fr" {
			rtt = strings.Replace(rtt, ".", ",", 1) // 0,4 ms
		}
		return prefix + "  " + t.f("reply-from", r.From, rtt)
	case "unreachable":
		return prefix + "  " + t.f("reply-unreachable", r.From, r.Code)
	}
	return prefix + "  " + t.s("reply-timeout")
}

// msPrecise keeps a tenth of a millisecond: round trips in a school's
// network are often under one.
func msPrecise(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Server) lookup(ctx context.Context, zone, name string) ([]netip.Addr, error) {
	if s.o.Lookup != nil {
		return s.o.Lookup(ctx, zone, name)
	}
	c := s.cfg()
	if c == nil {
		return nil, errors.New("no configuration")
	}
	var server string
	for _, z := range c.Zones {
		if z.Name == zone {
			server = net.JoinHostPort(z.Address.String(), "53")
		}
	}
	if server == "" {
		return nil, fmt.Errorf("no zone %q", zone)
	}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
	return res.LookupNetIP(ctx, "ip4", name)
}
