package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/netmark"
)

// TunnelInterface is the TUN device of tailscaled, the academy overlay.
const TunnelInterface = "tailscale0"

// tailscalePort is tailscaled's WireGuard port, open on the uplinks when
// the tunnel is used (netfilter mode off: the box's firewall lets it in).
const tailscalePort = 41641

// Ends that are not zones, as the config names them.
const (
	endInternet = config.EndInternet
	endTunnel   = config.EndTunnel
	endBox      = config.EndBox
)

// Rate limits, per second and per source address: each is a meter (a
// dynamic set keyed by ip saddr whose elements hold their own limit), so
// one noisy host spends its own budget, never another's.
const (
	pingRate, pingBurst       = 10, 20   // echo requests to the box from a zone or the tunnel
	wanPingRate, wanPingBurst = 5, 10    // echo requests to the box from an internet host
	synInRate, synInBurst     = 20, 40   // new TCP connections to the box from an internet host
	synFwdRate, synFwdBurst   = 100, 200 // new TCP connections through the box (port forwards) from an internet host
)

// Meters: how many sources each remembers, and for how long after a
// source's last packet. The timeout only has to outlast a limit's refill
// (burst/rate: 2 s at most), so a forgotten source comes back with the
// budget it would have had anyway. A full meter adds no source: the rule
// does not match and the packet goes on to the chain's next rules (see
// doc.go).
const (
	meterTimeout = 10 * time.Second
	wanMeterSize = 16384 // internet hosts
	lanMeterSize = 8192  // clients of every zone and the tunnel
)

// Set names.
const (
	setUplinks  = "uplinks"
	setAcademy  = "academy"
	setBlocked  = "blocked"
	setBlocked6 = "blocked6"
	// Meters (per-source limits).
	setSynIn   = "syn-in"
	setSynFwd  = "syn-fwd"
	setPingWAN = "ping-wan"
	setPingLAN = "ping-lan"
	// Public resolvers (resolvers.go), refused to zones protecting minors.
	setResolvers  = "resolvers"
	setResolvers6 = "resolvers6"
)

// Counter names that are not per pair, rule or forward.
const (
	counterSpoofed     = "spoofed"
	counterCGNAT       = "cgnat-spoofed"
	counterInvalid     = "invalid"
	counterSynFlood    = "syn-flood"
	counterSynFloodFwd = "syn-flood-fwd"
	counterPingFlood   = "ping-flood"
	counterResolver    = "resolver-blocked"
	counterDNSRedirect = "dns-redirect"
	counterDoH         = "doh-blocked"
	counterDoT         = "dot-rejected"
)

// maxObjName bounds counter names (the kernel's NFT_OBJ_MAXNAMELEN is 256
// with the NUL).
const maxObjName = 200

// zoneNetSet names the set holding a zone's subnet.
func zoneNetSet(zone string) string { return "net-" + zone }

// end is one side of a traffic pair: a LAN zone, the internet or the
// tunnel.
type end struct {
	name string
	zone *config.Zone // nil for the internet and the tunnel
	in   Expr         // matches packets coming from this end
	out  Expr         // matches packets going to this end
}

func (e end) lan() bool { return e.zone != nil }

type compiler struct {
	cfg      *config.Config
	plan     *Plan
	counters map[string]bool
	ruleCtr  map[int]string // rule index -> counter name
	ends     []end
	tunnel   bool
	pfZones  map[string]bool // zones holding a port-forward target
	// Config rules by (from, to), in order, and the pairs named by a rule
	// or a forwarding in either direction: built once, so compiling stays
	// linear in zones, rules and forwardings.
	pairRules map[pairKey][]int
	named     map[pairKey]bool
	forwards  map[pairKey]bool
}

type pairKey struct{ src, dst string }

// Compile plans the table of a valid config. Its size, and its time, grow
// linearly with the zones, rules and forwardings: zone pairs get a chain
// of their own only when something concerns them (see ownPair).
func Compile(cfg *config.Config) (*Plan, error) {
	c := &compiler{cfg: cfg, plan: &Plan{}, counters: map[string]bool{}, ruleCtr: map[int]string{}, pfZones: map[string]bool{},
		pairRules: map[pairKey][]int{}, named: map[pairKey]bool{}, forwards: map[pairKey]bool{}}
	if len(cfg.Uplinks) > netmark.MaxUplinks {
		return nil, fmt.Errorf("%d uplinks: at most %d have a mark", len(cfg.Uplinks), netmark.MaxUplinks)
	}
	if len(cfg.Zones) > config.MaxZones {
		return nil, fmt.Errorf("%d zones: at most %d", len(cfg.Zones), config.MaxZones)
	}
	for i, r := range cfg.Firewall.Rules {
		k := pairKey{r.From, r.To}
		c.pairRules[k] = append(c.pairRules[k], i)
		c.named[k], c.named[pairKey{r.To, r.From}] = true, true
	}
	for _, f := range cfg.Firewall.Forwardings {
		c.forwards[pairKey{f.From, f.To}] = true
		c.named[pairKey{f.From, f.To}], c.named[pairKey{f.To, f.From}] = true, true
	}
	if err := c.plan.addSets(cfg); err != nil {
		return nil, err
	}
	c.tunnel = cfg.Tunnel.Enabled || c.tunnelReferenced()
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		dev := z.Device()
		c.ends = append(c.ends, end{name: z.Name, zone: z, in: IfName{Name: dev}, out: IfName{Out: true, Name: dev}})
	}
	c.ends = append(c.ends, end{name: endInternet, in: IfSet{Set: setUplinks}, out: IfSet{Out: true, Set: setUplinks}})
	if c.tunnel {
		c.ends = append(c.ends, end{name: endTunnel, in: IfName{Name: TunnelInterface}, out: IfName{Out: true, Name: TunnelInterface}})
	}
	if err := c.nameRuleCounters(); err != nil {
		return nil, err
	}
	for _, f := range cfg.Firewall.PortForwards {
		z := zoneOf(cfg, f.ToAddress)
		if z == nil {
			return nil, fmt.Errorf("port forward %s: %s is in no zone", f.Name, f.ToAddress)
		}
		c.pfZones[z.Name] = true
	}

	c.chain("prerouting-mangle", &BaseChain{Type: "filter", Hook: "prerouting", Priority: PrioMangle}, c.preroutingMangle())
	c.chain("prerouting-nat", &BaseChain{Type: "nat", Hook: "prerouting", Priority: PrioDstNAT}, c.preroutingNAT())
	c.chain("input", &BaseChain{Type: "filter", Hook: "input", Priority: PrioFilter, Drop: true}, c.input())
	c.chain("forward", &BaseChain{Type: "filter", Hook: "forward", Priority: PrioFilter, Drop: true}, c.forward())
	c.chain("postrouting-mangle", &BaseChain{Type: "filter", Hook: "postrouting", Priority: PrioMangle}, c.postroutingMangle())
	c.chain("postrouting-nat", &BaseChain{Type: "nat", Hook: "postrouting", Priority: PrioSrcNAT}, c.postroutingNAT())
	for _, e := range c.ends {
		c.chain("in-"+e.name, nil, c.toBox(e))
	}
	for _, src := range c.ends {
		c.chain("fwd-"+src.name, nil, c.dispatch(src))
		for _, dst := range c.ends {
			if c.ownPair(src, dst) {
				c.chain(pairChain(src.name, dst.name), nil, c.pair(src, dst))
			}
		}
	}
	if c.cfg.AnyMinorsZone() {
		c.chain("dns-guard", nil, c.dnsGuard())
	}
	// Counters in name order: the plan, and the live table that lists them
	// in creation order, read like an index.
	slices.Sort(c.plan.Counters)
	return c.plan, nil
}

func pairChain(src, dst string) string { return "fwd-" + src + "-" + dst }

// otherZonesCounter counts what a zone sends to the zones without a pair
// chain of their own. Zone names have no "-": no pair chain has this name.
func otherZonesCounter(src string) string { return "fwd-" + src + "-other-zones" }

// ownPair says whether traffic from src to dst gets a chain (and a
// counter) of its own: a zone to itself, every pair with the internet or
// the tunnel, pairs that a rule or a forwarding names (both directions,
// so replies are counted with their pair), and every zone towards a zone
// holding port-forward targets (hairpin). Two zones with nothing between
// them share their source's fall-through: replies of established flows
// pass, anything else is rejected, as their own chain would do. So the
// table grows linearly with the zones, not with their pairs.
func (c *compiler) ownPair(src, dst end) bool {
	switch {
	case !src.lan() && src.name == dst.name:
		return false // internet to internet, tunnel to tunnel: never routed
	case src.name == dst.name, !src.lan(), !dst.lan():
		return true
	}
	return c.pfZones[dst.name] || c.named[pairKey{src.name, dst.name}]
}

func (p *Plan) addSets(cfg *config.Config) error {
	p.Sets = append(p.Sets,
		Set{Name: setSynIn, Kind: SetIPv4Meter, Size: wanMeterSize, Timeout: meterTimeout},
		Set{Name: setSynFwd, Kind: SetIPv4Meter, Size: wanMeterSize, Timeout: meterTimeout},
		Set{Name: setPingWAN, Kind: SetIPv4Meter, Size: wanMeterSize, Timeout: meterTimeout},
		Set{Name: setPingLAN, Kind: SetIPv4Meter, Size: lanMeterSize, Timeout: meterTimeout},
	)
	up := Set{Name: setUplinks, Kind: SetIfnames}
	for _, u := range cfg.Uplinks {
		up.Ifnames = append(up.Ifnames, u.Interface)
	}
	p.Sets = append(p.Sets, up)
	for _, z := range cfg.Zones {
		r, err := MergePrefixes([]netip.Prefix{z.Subnet})
		if err != nil {
			return fmt.Errorf("zone %s: subnet %w", z.Name, err)
		}
		p.Sets = append(p.Sets, Set{Name: zoneNetSet(z.Name), Kind: SetIPv4Ranges, Ranges: r})
	}
	r, err := MergePrefixes(cfg.Tunnel.AcademyPrefixes)
	if err != nil {
		return fmt.Errorf("tunnel.academy_prefixes: %w", err)
	}
	p.Sets = append(p.Sets,
		Set{Name: setAcademy, Kind: SetIPv4Ranges, Ranges: r},
		Set{Name: setBlocked, Kind: SetIPv4Addrs, Runtime: true},
		Set{Name: setBlocked6, Kind: SetIPv6Addrs, Runtime: true},
	)
	if cfg.AnyMinorsZone() {
		v4, v6 := resolverAddrs()
		p.Sets = append(p.Sets,
			Set{Name: setResolvers, Kind: SetIPv4Addrs, Addrs: v4},
			Set{Name: setResolvers6, Kind: SetIPv6Addrs, Addrs: v6},
		)
	}
	return nil
}

// tunnelReferenced reports whether a forwarding or rule names the tunnel:
// then its chains exist even with the tunnel disabled (matching an absent
// interface is harmless), rather than dropping what the config says.
func (c *compiler) tunnelReferenced() bool {
	for _, f := range c.cfg.Firewall.Forwardings {
		if f.From == endTunnel || f.To == endTunnel {
			return true
		}
	}
	for _, r := range c.cfg.Firewall.Rules {
		if r.From == endTunnel || r.To == endTunnel {
			return true
		}
	}
	return false
}

func (c *compiler) chain(name string, base *BaseChain, rules []Rule) {
	c.plan.Chains = append(c.plan.Chains, Chain{Name: name, Base: base, Rules: rules})
}

// counter returns the expression counting into a named counter, declaring
// it on first use.
func (c *compiler) counter(name string) Counter {
	if !c.counters[name] {
		c.counters[name] = true
		c.plan.Counters = append(c.plan.Counters, name)
	}
	return Counter{Name: name}
}

// nameRuleCounters gives every config rule a counter name that is stable
// across reloads (derived from the rule's name, not its position) and
// unique.
func (c *compiler) nameRuleCounters() error {
	used := map[string]bool{}
	for i, r := range c.cfg.Firewall.Rules {
		base := "rule-" + sanitize(r.Name)
		name := base
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		if len(name) > maxObjName {
			return fmt.Errorf("rule %q: name too long for a counter", r.Name)
		}
		used[name] = true
		c.ruleCtr[i] = name
	}
	return nil
}

// sanitize keeps a name readable as an nft identifier: lower-case letters,
// digits, - and _; anything else becomes _.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxObjName-20 {
			break
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

func zoneOf(cfg *config.Config, a netip.Addr) *config.Zone {
	for i := range cfg.Zones {
		if cfg.Zones[i].Subnet.Contains(a) {
			return &cfg.Zones[i]
		}
	}
	return nil
}

func (c *compiler) preroutingMangle() []Rule {
	var rules []Rule
	for i, u := range c.cfg.Uplinks {
		rules = append(rules, Rule{
			Comment: fmt.Sprintf("a connection opened from uplink %s stays on it (replies of port forwards)", u.Name),
			Exprs:   []Expr{IfName{Name: u.Interface}, CtNoUplink{}, SaveMark{Mark: netmark.Uplink(i)}},
		})
	}
	rules = append(rules, Rule{
		Comment: "the connection's uplink, for the uplink manager's fwmark rules and the reverse-path check",
		Exprs:   []Expr{RestoreMark{}},
	})
	rp := []Expr{NfprotoIPv4{}}
	if c.tunnel {
		// WireGuard's cryptokey routing already ties each source to a peer.
		rp = append(rp, IfName{Neg: true, Name: TunnelInterface})
	}
	rules = append(rules, Rule{
		Comment: "anti-spoofing: the source must route back through the input interface (with the uplink mark)",
		Exprs:   append(rp, RPFail{}, c.counter(counterSpoofed), Verdict{Kind: Drop}),
	})
	if c.tunnel {
		// The tailnet's addresses (100.64.0.0/10) are believed only on
		// tailscale0. Elsewhere they would pass the reverse-path check on
		// an uplink (its table's default route goes back out of it), so
		// they are dropped explicitly, for the box and for forwarding. A
		// 4G backup behind carrier-grade NAT has its own address and
		// gateway in 100.64.0.0/10: only new connections are refused, so
		// replies to the box's own traffic (probes, DNS) and ICMP errors
		// of the carrier's routers (path MTU) still pass; its DHCP client
		// reads with a packet socket, before netfilter. What is lost: a
		// host of the carrier's CGNAT space opening a connection to the
		// box, tailscaled's udp/41641 included (peers use the public
		// endpoint or the relay instead).
		rules = append(rules, Rule{
			Comment: "tailnet addresses (100.64.0.0/10) open connections only through the tunnel",
			Exprs: []Expr{IfName{Neg: true, Name: TunnelInterface}, AddrIs{Prefix: cgnatPrefix},
				CtState{States: []string{"new"}}, c.counter(counterCGNAT), Verdict{Kind: Drop}},
		})
	}
	return rules
}

// cgnatPrefix is the shared address space (RFC 6598) tailnets number
// their nodes from.
var cgnatPrefix = netip.MustParsePrefix("100.64.0.0/10")

func (c *compiler) preroutingNAT() []Rule {
	var rules []Rule
	for _, z := range c.cfg.Zones {
		for _, proto := range []string{"udp", "tcp"} {
			r := Rule{Exprs: []Expr{
				IfName{Name: z.Device()},
				AddrIs{Dst: true, Neg: true, Prefix: netip.PrefixFrom(z.Address, 32)},
				Ports{Proto: proto, Ranges: []PortRange{{53, 53}}},
				c.counter(counterDNSRedirect),
				DNAT{Addr: z.Address, Port: 53},
			}}
			if proto == "udp" {
				r.Comment = fmt.Sprintf("zone %s: plain DNS to any server lands on the box's resolver", z.Name)
			}
			rules = append(rules, r)
		}
	}
	for _, f := range c.cfg.Firewall.PortForwards {
		ctr := c.counter("pf-" + sanitize(f.Name))
		proto := string(f.Protocol)
		for _, u := range c.cfg.Uplinks {
			if f.Uplink != "" && f.Uplink != u.Name {
				continue
			}
			var match []Expr
			if u.Addressing == config.AddressingStatic {
				// Matching the address, not the interface, also catches
				// inside clients using the public address (hairpin).
				match = []Expr{AddrIs{Dst: true, Prefix: netip.PrefixFrom(u.Address.Addr(), 32)}}
			} else {
				// A DHCP uplink's address is not known here; no hairpin.
				match = []Expr{NfprotoIPv4{}, IfName{Name: u.Interface}, DaddrLocal{}}
			}
			var port uint16
			if f.ToPort != 0 {
				port = uint16(f.ToPort)
			}
			target := f.ToAddress.String()
			if port != 0 {
				target = fmt.Sprintf("%s:%d", f.ToAddress, port)
			}
			rules = append(rules, Rule{
				Comment: fmt.Sprintf("port forward %s: %s/%s on %s to %s", f.Name, proto, f.Port, u.Name, target),
				Exprs: append(match,
					Ports{Proto: proto, Ranges: []PortRange{{f.Port.First, f.Port.Last}}},
					ctr, DNAT{Addr: f.ToAddress, Port: port}),
			})
		}
	}
	return rules
}

func (c *compiler) input() []Rule {
	rules := []Rule{
		{Exprs: []Expr{IfName{Name: "lo"}, Verdict{Kind: Accept}}},
		{Exprs: []Expr{CtState{States: []string{"invalid"}}, c.counter(counterInvalid), Verdict{Kind: Drop}}},
	}
	for _, e := range c.ends {
		rules = append(rules, Rule{Exprs: []Expr{e.in, Verdict{Kind: Jump, Chain: "in-" + e.name}}})
	}
	return rules
}

func (c *compiler) forward() []Rule {
	rules := []Rule{{
		Comment: "new TCP connections through the uplinks and the tunnel (MTU 1280) get an MSS that fits the path",
		Exprs:   []Expr{IfSet{Out: true, Set: setUplinks}, TCPSyn{}, ClampMSS{}},
	}}
	if c.tunnel {
		rules = append(rules, Rule{Exprs: []Expr{IfName{Out: true, Name: TunnelInterface}, TCPSyn{}, ClampMSS{}}})
	}
	rules = append(rules, Rule{Exprs: []Expr{CtState{States: []string{"invalid"}}, c.counter(counterInvalid), Verdict{Kind: Drop}}})
	for _, e := range c.ends {
		rules = append(rules, Rule{Exprs: []Expr{e.in, Verdict{Kind: Jump, Chain: "fwd-" + e.name}}})
	}
	return rules
}

func (c *compiler) postroutingMangle() []Rule {
	var rules []Rule
	for i, u := range c.cfg.Uplinks {
		rules = append(rules, Rule{
			Comment: fmt.Sprintf("a new connection leaving through %s is tied to it (mark %#x)", u.Name, netmark.Uplink(i)),
			Exprs:   []Expr{IfName{Out: true, Name: u.Interface}, CtNoUplink{}, SaveMark{Mark: netmark.Uplink(i)}},
		})
	}
	return rules
}

func (c *compiler) postroutingNAT() []Rule {
	var rules []Rule
	for _, u := range c.cfg.Uplinks {
		rules = append(rules, Rule{Exprs: []Expr{
			IfName{Out: true, Name: u.Interface}, c.counter("masq-" + sanitize(u.Name)), Masquerade{},
		}})
	}
	for _, z := range c.cfg.Zones {
		if !c.pfZones[z.Name] {
			continue
		}
		rules = append(rules, Rule{
			Comment: fmt.Sprintf("hairpin: a %s client reaching a %s server through a public address gets the box as source", z.Name, z.Name),
			Exprs: []Expr{IfName{Out: true, Name: z.Device()}, AddrSet{Set: zoneNetSet(z.Name)}, CtDNAT{},
				Masquerade{}},
		})
	}
	return rules
}

// toBox is what an end may ask of the box itself.
func (c *compiler) toBox(e end) []Rule {
	name := "in-" + e.name
	rules := []Rule{{Exprs: []Expr{c.counter(name)}}}
	// Limits come before the conntrack shortcut: an echo request of a
	// ping already under way is "established" and would skip them.
	switch {
	case e.name == endInternet:
		rules = append(rules,
			Rule{Comment: fmt.Sprintf("at most %d echo requests per second from each internet host, ping sessions under way included", wanPingRate),
				Exprs: []Expr{ICMPEcho{}, Meter{Set: setPingWAN, Limit: Limit{Rate: wanPingRate, Burst: wanPingBurst, Over: true}},
					c.counter(counterPingFlood), Verdict{Kind: Drop}}},
			Rule{Comment: fmt.Sprintf("at most %d new TCP connections per second to the box from each internet host (port forwards have their own budget)", synInRate),
				Exprs: []Expr{TCPSyn{New: true}, Meter{Set: setSynIn, Limit: Limit{Rate: synInRate, Burst: synInBurst, Over: true}},
					c.counter(counterSynFlood), Verdict{Kind: Drop}}})
	case !e.lan() || e.zone.Kind != config.KindGuest:
		rules = append(rules, Rule{
			Comment: fmt.Sprintf("at most %d echo requests per second from each client, ping sessions under way included", pingRate),
			Exprs: []Expr{ICMPEcho{}, Meter{Set: setPingLAN, Limit: Limit{Rate: pingRate, Burst: pingBurst, Over: true}},
				c.counter(counterPingFlood), Verdict{Kind: Drop}}})
	}
	rules = append(rules, Rule{Exprs: []Expr{CtState{States: []string{"established", "related"}}, Verdict{Kind: Accept}}})
	rules = append(rules, c.configRules(e.name, endBox)...)
	accept := func(comment string, exprs ...Expr) {
		rules = append(rules, Rule{Comment: comment, Exprs: append(exprs, Verdict{Kind: Accept})})
	}
	switch {
	case e.lan():
		z := e.zone
		if z.DHCP.Enabled {
			accept("DHCP", Ports{Proto: "udp", Ranges: []PortRange{{67, 67}}})
		}
		accept("DNS", Ports{Proto: "udp", Ranges: []PortRange{{53, 53}}})
		accept("", Ports{Proto: "tcp", Ranges: []PortRange{{53, 53}}})
		guest := z.Kind == config.KindGuest
		if c.cfg.Time.Serve && !guest {
			accept("NTP", Ports{Proto: "udp", Ranges: []PortRange{{123, 123}}})
		}
		if sp := c.cfg.StatusPage; sp.Enabled && slices.Contains(sp.Zones, z.Name) {
			p, tls := uint16(sp.Port), uint16(sp.HTTPSPort)
			rs := []PortRange{{p, p}, {tls, tls}}
			if tls < p { // the kernel's set reads back in order
				rs[0], rs[1] = rs[1], rs[0]
			}
			accept("status page", Ports{Proto: "tcp", Ranges: rs})
		} else if sp.Enabled && c.blockPageZone(z) {
			// The block page (issue 17): plain HTTP only; HTTPS to the
			// box is rejected at once by the final rule.
			p := uint16(sp.Port)
			accept("block page", Ports{Proto: "tcp", Ranges: []PortRange{{p, p}}})
		}
		if t := c.cfg.Telemetry; t.MetricsPort > 0 && !guest && slices.Contains(t.MetricsZones, z.Name) {
			p := uint16(t.MetricsPort)
			accept("metrics", Ports{Proto: "tcp", Ranges: []PortRange{{p, p}}})
		}
		if !guest {
			accept("ping", ICMPEcho{})
		}
		rules = append(rules, Rule{Exprs: []Expr{Verdict{Kind: Reject}}})
	case e.name == endInternet:
		for _, u := range c.cfg.Uplinks {
			if u.Addressing == config.AddressingDHCP {
				accept("DHCP client of "+u.Name, IfName{Name: u.Interface}, Ports{Proto: "udp", Ranges: []PortRange{{68, 68}}})
			}
		}
		if c.cfg.Tunnel.Enabled {
			accept("tailscaled (WireGuard)", Ports{Proto: "udp", Ranges: []PortRange{{tailscalePort, tailscalePort}}})
		}
		accept("ping", ICMPEcho{})
		rules = append(rules, Rule{Exprs: []Expr{Verdict{Kind: Drop}}})
	default: // tunnel
		accept("ping from the academy", ICMPEcho{})
		if p := uint16(c.cfg.Telemetry.MetricsPort); p > 0 {
			accept("metrics for the academy", Ports{Proto: "tcp", Ranges: []PortRange{{p, p}}})
		}
		// The NOC's push (issue 16): only from the tunnel, and only when
		// the box trusts NOC keys; the API checks the caller's tailnet
		// identity and every bundle's signature itself.
		if m := c.cfg.Management; m.APIPort > 0 && len(m.TrustedKeys) > 0 {
			p := uint16(m.APIPort)
			accept("management API for the NOC", Ports{Proto: "tcp", Ranges: []PortRange{{p, p}}})
		}
		rules = append(rules, Rule{Exprs: []Expr{Verdict{Kind: Drop}}})
	}
	return rules
}

// dispatch sends a source end's forwarded traffic to its pair chains.
func (c *compiler) dispatch(src end) []Rule {
	var rules []Rule
	if c.cfg.MinorsZone(src.zone) {
		rules = append(rules, Rule{
			Comment: "DNS filter bypasses (the zone's profile protects minors)",
			Exprs:   []Expr{Verdict{Kind: Jump, Chain: "dns-guard"}},
		})
	}
	if src.name == endInternet {
		rules = append(rules, Rule{
			Comment: fmt.Sprintf("at most %d new TCP connections per second through the box (port forwards) from each internet host", synFwdRate),
			Exprs: []Expr{TCPSyn{New: true}, Meter{Set: setSynFwd, Limit: Limit{Rate: synFwdRate, Burst: synFwdBurst, Over: true}},
				c.counter(counterSynFloodFwd), Verdict{Kind: Drop}}})
	}
	others := false
	for _, dst := range c.ends {
		if !c.ownPair(src, dst) {
			others = others || dst.lan()
			continue
		}
		rules = append(rules, Rule{Exprs: []Expr{dst.out, Verdict{Kind: Jump, Chain: pairChain(src.name, dst.name)}}})
	}
	if others {
		rules = append(rules,
			Rule{Comment: "zones with nothing towards them: replies of flows they opened, nothing else",
				Exprs: []Expr{c.counter(otherZonesCounter(src.name))}},
			Rule{Exprs: []Expr{CtState{States: []string{"established", "related"}}, Verdict{Kind: Accept}}})
	}
	rules = append(rules, Rule{Exprs: []Expr{c.deny(src)}})
	return rules
}

func (c *compiler) deny(src end) Verdict {
	if src.lan() {
		return Verdict{Kind: Reject}
	}
	return Verdict{Kind: Drop}
}

func (c *compiler) forwarding(src, dst string) bool {
	return c.forwards[pairKey{src, dst}]
}

// pair is the chain deciding traffic from src to dst.
func (c *compiler) pair(src, dst end) []Rule {
	name := pairChain(src.name, dst.name)
	rules := []Rule{
		{Exprs: []Expr{c.counter(name)}},
		{Exprs: []Expr{CtState{States: []string{"established", "related"}}, Verdict{Kind: Accept}}},
	}
	rules = append(rules, c.configRules(src.name, dst.name)...)
	if dst.lan() && c.pfZones[dst.name] {
		rules = append(rules, Rule{Comment: "port forwards", Exprs: []Expr{CtDNAT{}, Verdict{Kind: Accept}}})
	}
	var kind config.ZoneKind
	if src.zone != nil {
		kind = src.zone.Kind
	}
	switch {
	case src.name == dst.name:
		rules = append(rules, Rule{Comment: "a zone reaches itself", Exprs: []Expr{Verdict{Kind: Accept}}})
	case c.forwarding(src.name, dst.name):
		rules = append(rules, Rule{Comment: "firewall.forwardings", Exprs: []Expr{Verdict{Kind: Accept}}})
	case dst.name == endInternet && (kind == config.KindPedagogical || kind == config.KindGuest):
		rules = append(rules, Rule{Comment: fmt.Sprintf("%s zones reach the internet", kind), Exprs: []Expr{Verdict{Kind: Accept}}})
	case dst.name == endTunnel && kind == config.KindAdministrative:
		rules = append(rules, Rule{Comment: "administrative zones reach the academy datacenter",
			Exprs: []Expr{AddrSet{Dst: true, Set: setAcademy}, Verdict{Kind: Accept}}})
	}
	if last := rules[len(rules)-1]; len(last.Exprs) != 1 || last.Exprs[0] != (Verdict{Kind: Accept}) {
		rules = append(rules, Rule{Exprs: []Expr{c.deny(src)}})
	}
	return rules
}

// configRules compiles the config's rules from src to dst, in order.
func (c *compiler) configRules(src, dst string) []Rule {
	var rules []Rule
	for _, i := range c.pairRules[pairKey{src, dst}] {
		r := c.cfg.Firewall.Rules[i]
		var exprs []Expr
		switch {
		case len(r.Ports) > 0:
			var prs []PortRange
			for _, p := range r.Ports {
				prs = append(prs, PortRange{p.First, p.Last})
			}
			exprs = append(exprs, Ports{Proto: string(r.Protocol), Ranges: mergePorts(prs)})
		case r.Protocol != config.ProtoAny:
			exprs = append(exprs, L4{Proto: string(r.Protocol)})
		}
		for _, side := range []struct {
			dst bool
			ps  []netip.Prefix
		}{{false, r.Source}, {true, r.Destination}} {
			if len(side.ps) == 0 {
				continue
			}
			e, err := addrMatch(side.dst, side.ps)
			if err != nil {
				// Validation rejects such prefixes; keep the rule closed
				// rather than open if one slips through.
				e = AddrIs{Dst: side.dst, Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 32)}
			}
			exprs = append(exprs, e)
		}
		v := Verdict{Kind: Accept}
		switch r.Action {
		case config.ActionDrop:
			v.Kind = Drop
		case config.ActionReject:
			v.Kind = Reject
		}
		exprs = append(exprs, c.counter(c.ruleCtr[i]), v)
		rules = append(rules, Rule{Comment: "rule " + r.Name, Exprs: exprs})
	}
	return rules
}

// addrMatch matches an address against prefixes: one comparison for a
// single prefix, an anonymous interval set otherwise.
func addrMatch(dst bool, ps []netip.Prefix) (Expr, error) {
	rs, err := MergePrefixes(ps)
	if err != nil {
		return nil, err
	}
	if len(rs) == 1 {
		if p, ok := rs[0].Prefix(); ok {
			return AddrIs{Dst: dst, Prefix: p}, nil
		}
	}
	return AddrIn{Dst: dst, Ranges: rs}, nil
}

func (c *compiler) dnsGuard() []Rule {
	return []Rule{
		{Comment: "DNS-over-HTTPS endpoints (filled by the DNS filter)",
			Exprs: []Expr{AddrSet{Dst: true, Set: setBlocked}, c.counter(counterDoH), Verdict{Kind: Drop}}},
		{Exprs: []Expr{AddrSet{Dst: true, V6: true, Set: setBlocked6}, c.counter(counterDoH), Verdict{Kind: Drop}}},
		{Comment: "public resolvers answer on other ports than 53 (443, 853, 5353...): every port is refused, ping passes",
			Exprs: []Expr{AddrSet{Dst: true, Set: setResolvers}, ICMPEcho{}, Verdict{Kind: Return}}},
		{Exprs: []Expr{AddrSet{Dst: true, Set: setResolvers}, c.counter(counterResolver), Verdict{Kind: Reject}}},
		{Exprs: []Expr{AddrSet{Dst: true, V6: true, Set: setResolvers6}, c.counter(counterResolver), Verdict{Kind: Reject}}},
		{Comment: "DNS over TLS and over QUIC",
			Exprs: []Expr{Ports{Proto: "tcp", Ranges: []PortRange{{853, 853}}}, c.counter(counterDoT), Verdict{Kind: Reset}}},
		{Exprs: []Expr{Ports{Proto: "udp", Ranges: []PortRange{{853, 853}}}, c.counter(counterDoT), Verdict{Kind: Reject}}},
	}
}

// blockPageZone says whether a zone's DNS profile answers blocked names
// with the box's block page.
func (c *compiler) blockPageZone(z *config.Zone) bool {
	for _, p := range c.cfg.DNS.Profiles {
		if p.Name == z.DNSProfile {
			return p.BlockResponse == config.BlockBlockPage
		}
	}
	return false
}
