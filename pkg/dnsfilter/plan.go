package dnsfilter

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/domainset"
	"passerelle/pkg/netmark"
	"passerelle/pkg/resolver"
)

// Plan is the DNS filter's desired state for one config: pure data,
// computed without touching the network.
type Plan struct {
	Listeners []Listener
	Profiles  []*ProfilePlan
	Resolver  resolver.Config
	Lists     ListsPlan
	Privacy   PrivacyPlan
	RateLimit int // queries per second per client
	Local     LocalPlan
}

// Listener is the server on one zone's box address.
type Listener struct {
	Zone    string
	Addr    netip.Addr
	Profile string // "" serves the zone unfiltered
}

// ProfilePlan is one filtering policy, normalised.
type ProfilePlan struct {
	Name string
	// Categories are the UT1 categories applied; for minors' profiles doh
	// and vpn are added (bypass defence).
	Categories []string
	Allow      []string
	Deny       []string
	SafeSearch config.SafeSearch
	BlockPage  bool
	Minors     bool
	FailClosed bool
}

// ListsPlan says where lists come from.
type ListsPlan struct {
	Dir       string
	Source    string
	Refresh   config.Window
	MaxShrink int
	// RefreshAt is the minute of the day the daily refresh runs: a point
	// of the window chosen from the host name, so an academy's boxes do
	// not all hit the mirror at once.
	RefreshAt int
}

// PrivacyPlan is what may be recorded.
type PrivacyPlan struct {
	LogBlocked bool
	Retention  time.Duration
	Dir        string
}

// minorsCategories are blocked in every minors' profile: they are how
// pupils sidestep the filter.
var minorsCategories = []string{"doh", "vpn"}

// Compile computes the plan for a valid config.
func Compile(cfg *config.Config) (*Plan, error) {
	p := &Plan{RateLimit: cfg.DNS.RateLimit}
	for _, z := range cfg.Zones {
		p.Listeners = append(p.Listeners, Listener{Zone: z.Name, Addr: z.Address, Profile: z.DNSProfile})
	}
	for _, pr := range cfg.DNS.Profiles {
		pp := &ProfilePlan{
			Name:       pr.Name,
			Categories: slices.Clone(pr.Categories),
			SafeSearch: pr.SafeSearch,
			BlockPage:  pr.BlockResponse == config.BlockBlockPage,
			Minors:     pr.Minors,
			FailClosed: pr.FailClosed,
		}
		if pr.Minors {
			for _, c := range minorsCategories {
				if !slices.Contains(pp.Categories, c) {
					pp.Categories = append(pp.Categories, c)
				}
			}
		}
		for _, l := range []struct {
			key string
			in  []string
			out *[]string
		}{{"allow", pr.Allow, &pp.Allow}, {"deny", pr.Deny, &pp.Deny}} {
			for _, d := range l.in {
				n, err := domainset.Normalize(d)
				if err != nil {
					return nil, fmt.Errorf("dns profile %s: %s: %w", pr.Name, l.key, err)
				}
				*l.out = append(*l.out, n)
			}
		}
		p.Profiles = append(p.Profiles, pp)
	}
	uplinkMark := map[string]uint32{}
	for i, u := range cfg.Uplinks {
		if i < netmark.MaxUplinks {
			uplinkMark[u.Name] = netmark.Uplink(i)
		}
	}
	for _, u := range cfg.DNS.Upstreams {
		p.Resolver.Upstreams = append(p.Resolver.Upstreams, resolver.Upstream{Addr: u.Address, Mark: uplinkMark[u.Uplink]})
	}
	for _, cf := range cfg.DNS.ConditionalForwards {
		d, err := domainset.Normalize(cf.Domain)
		if err != nil {
			return nil, fmt.Errorf("dns conditional forward: %w", err)
		}
		p.Resolver.Forwards = append(p.Resolver.Forwards, resolver.Forward{Domain: d, Servers: slices.Clone(cf.Servers)})
	}
	tf, err := tunnelForwards(cfg.Tunnel)
	if err != nil {
		return nil, err
	}
	p.Resolver.Forwards = append(p.Resolver.Forwards, tf...)
	p.Local = compileLocal(cfg, p.Resolver.Forwards)
	p.Resolver.Race = cfg.DNS.Race
	p.Resolver.CacheSize = cfg.DNS.Cache.Size
	p.Resolver.MinTTL = time.Duration(cfg.DNS.Cache.MinTTL)
	p.Resolver.MaxTTL = time.Duration(cfg.DNS.Cache.MaxTTL)
	p.Resolver.ServeStale = cfg.DNS.Cache.ServeStale
	l := cfg.DNS.Lists
	p.Lists = ListsPlan{Dir: l.Directory, Source: l.Source, Refresh: l.Refresh, MaxShrink: l.MaxShrink}
	p.Lists.RefreshAt = refreshMinute(l.Refresh, cfg.Identity.Hostname)
	p.Privacy = PrivacyPlan{
		LogBlocked: cfg.DNS.Privacy.QueryLog == config.QueryLogBlocked,
		Retention:  time.Duration(cfg.DNS.Privacy.Retention),
		Dir:        cfg.DNS.Privacy.Directory,
	}
	return p, nil
}

// compileLocal derives the names the box answers itself.
func compileLocal(cfg *config.Config, forwards []resolver.Forward) LocalPlan {
	lower := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }
	lp := LocalPlan{Domain: lower(cfg.DNS.LocalDomain)}
	if h := lower(cfg.Identity.Hostname); h != "" && lp.Domain != "" {
		lp.BoxName = h + "." + lp.Domain
	}
	for _, z := range cfg.Zones {
		lz := LocalZone{Name: z.Name, Addr: z.Address, Domain: lower(z.DHCP.Domain), Guest: z.Kind == config.KindGuest}
		for _, s := range append([]string{lp.Domain}, privateSuffixes...) {
			if s != "" && lz.Domain != "" && inDomain(lz.Domain, s) {
				lz.Whole = true
			}
		}
		lp.Zones = append(lp.Zones, lz)
		for _, r := range z.DHCP.Reservations {
			if l := sanitizeLabel(r.Name); l != "" {
				lp.Hosts = append(lp.Hosts, LocalHost{Zone: z.Name, Label: l, Addr: r.Address})
			}
		}
	}
	for _, f := range forwards {
		lp.Forwards = append(lp.Forwards, f.Domain)
	}
	return lp
}

// refreshMinute picks a minute of the window from the host name.
func refreshMinute(w config.Window, host string) int {
	length := (w.End - w.Start + 24*60) % (24 * 60)
	if length == 0 {
		return w.Start
	}
	h := fnv.New32a()
	h.Write([]byte(host))
	return (w.Start + int(h.Sum32()%uint32(length))) % (24 * 60)
}

// nextRefresh returns the first time after now at minute-of-day m (local
// time of now's location).
func nextRefresh(now time.Time, m int) time.Time {
	y, mo, d := now.Date()
	t := time.Date(y, mo, d, m/60, m%60, 0, 0, now.Location())
	if !t.After(now) {
		t = time.Date(y, mo, d+1, m/60, m%60, 0, 0, now.Location())
	}
	return t
}

func (p *Plan) profile(name string) *ProfilePlan {
	for _, pp := range p.Profiles {
		if pp.Name == name {
			return pp
		}
	}
	return nil
}

// String renders the plan as stable text.
func (p *Plan) String() string {
	var b strings.Builder
	for _, l := range p.Listeners {
		prof := l.Profile
		if prof == "" {
			prof = "(unfiltered)"
		}
		fmt.Fprintf(&b, "listen %s %s udp+tcp profile %s\n", l.Zone, netip.AddrPortFrom(l.Addr, 53), prof)
	}
	for _, pp := range p.Profiles {
		block := "nxdomain"
		if pp.BlockPage {
			block = "blockpage"
		}
		fmt.Fprintf(&b, "profile %s: categories %s; allow %s; deny %s; safe_search %s; block %s; minors %v; fail_closed %v\n",
			pp.Name, list(pp.Categories), list(pp.Allow), list(pp.Deny), pp.SafeSearch, block, pp.Minors, pp.FailClosed)
	}
	for _, u := range p.Resolver.Upstreams {
		fmt.Fprintf(&b, "upstream %s", u.Addr)
		if u.Mark != 0 {
			fmt.Fprintf(&b, " mark %#x", u.Mark)
		}
		b.WriteString("\n")
	}
	if p.Resolver.Race {
		b.WriteString("upstream race: the two best at once\n")
	}
	for _, f := range p.Resolver.Forwards {
		s := make([]string, len(f.Servers))
		for i, a := range f.Servers {
			s[i] = a.String()
		}
		fmt.Fprintf(&b, "forward %s -> %s\n", f.Domain, strings.Join(s, ","))
	}
	fmt.Fprintf(&b, "cache %d entries, ttl %s-%s, serve_stale %v\n", p.Resolver.CacheSize, p.Resolver.MinTTL, p.Resolver.MaxTTL, p.Resolver.ServeStale)
	src := p.Lists.Source
	if src == "" {
		src = "(none: lists kept on the box)"
	}
	fmt.Fprintf(&b, "lists %s from %s, refresh daily at %02d:%02d (window %s), max shrink %d%%\n",
		p.Lists.Dir, src, p.Lists.RefreshAt/60, p.Lists.RefreshAt%60, p.Lists.Refresh, p.Lists.MaxShrink)
	if p.Privacy.LogBlocked {
		fmt.Fprintf(&b, "privacy: blocked queries logged to %s (client hashed, daily key), kept %s\n", p.Privacy.Dir, p.Privacy.Retention)
	} else {
		b.WriteString("privacy: aggregate counters only\n")
	}
	fmt.Fprintf(&b, "rate limit %d queries/s per client\n", p.RateLimit)
	if l := p.Local; l.Domain != "" {
		fmt.Fprintf(&b, "local names, never forwarded: box %s", l.BoxName)
		for _, z := range l.Zones {
			scope := "device names"
			if z.Whole {
				scope = "whole"
			}
			fmt.Fprintf(&b, "; zone %s %s (%s)", z.Name, z.Domain, scope)
		}
		fmt.Fprintf(&b, "; %d named reservations; wpad, localhost, single labels, .local\n", len(l.Hosts))
		b.WriteString("private reverse zones answered on the box (RFC 6303, 100.64/10)")
		var fw []string
		for _, d := range l.Forwards {
			if _, ok := reverseZone(d); ok || strings.HasSuffix(d, ".arpa") {
				fw = append(fw, d)
			}
		}
		if len(fw) > 0 {
			fmt.Fprintf(&b, " except those forwarded: %s", strings.Join(fw, ","))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// TailscaleResolver is tailscaled's own resolver on the box (quad-100): it
// answers the tailnet's MagicDNS names from the node list, even with the
// tailnet's DNS not accepted (tunnel.Plan), and is reached over tailscale0.
var TailscaleResolver = netip.AddrPortFrom(netip.MustParseAddr("100.100.100.100"), 53)

// tunnelForwards are the conditional forwards of the academy tunnel, while
// it is enabled: the academy's domains to its resolvers (inside the
// academy prefixes, so tailscaled's routes carry the queries over
// tailscale0) and the tailnet's domain to tailscaled's resolver.
func tunnelForwards(t config.Tunnel) ([]resolver.Forward, error) {
	if !t.Enabled {
		return nil, nil
	}
	var fs []resolver.Forward
	for _, d := range t.AcademyDomains {
		n, err := domainset.Normalize(d)
		if err != nil {
			return nil, fmt.Errorf("tunnel academy domain: %w", err)
		}
		fs = append(fs, resolver.Forward{Domain: n, Servers: slices.Clone(t.AcademyResolvers)})
	}
	if t.TailnetDomain != "" {
		n, err := domainset.Normalize(t.TailnetDomain)
		if err != nil {
			return nil, fmt.Errorf("tunnel tailnet domain: %w", err)
		}
		fs = append(fs, resolver.Forward{Domain: n, Servers: []netip.AddrPort{TailscaleResolver}})
	}
	return fs, nil
}
