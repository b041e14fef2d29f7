package firewall

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"passerelle/pkg/config"
)

// TestZoneCap: a config with more zones than config.MaxZones is refused
// at parse time, with the file position of the zones field; at the cap it
// compiles. Compile refuses a hand-made config over the cap.
func TestZoneCap(t *testing.T) {
	cfg := parseZones(t, config.MaxZones)
	if _, err := Compile(cfg); err != nil {
		t.Fatalf("%d zones: %v", config.MaxZones, err)
	}
	_, err := config.Parse("zones.yaml", zonesConfig(config.MaxZones+1))
	if err == nil {
		t.Fatalf("%d zones accepted", config.MaxZones+1)
	}
	if !regexp.MustCompile(`zones\.yaml:\d+:\d+: zones: 65 zones, at most 64`).MatchString(err.Error()) {
		t.Errorf("error %q does not name FILE:LINE:COL and the field zones", err)
	}
	t.Logf("refused as expected: %v", err)
	over := *cfg
	over.Zones = append(append([]config.Zone(nil), cfg.Zones...), cfg.Zones[0])
	if _, err := Compile(&over); err == nil {
		t.Error("Compile accepted a config over the zone cap")
	}
}

// TestCompileGrowsLinearly: four times the zones, about four times the
// chains and rules (the pair chains of every zone with every zone would
// make it sixteen).
func TestCompileGrowsLinearly(t *testing.T) {
	size := func(n int) (chains, rules int) {
		p, err := Compile(parseZones(t, n))
		if err != nil {
			t.Fatal(err)
		}
		_, rules = p.size()
		return len(p.Chains), rules
	}
	c16, r16 := size(16)
	c64, r64 := size(config.MaxZones)
	t.Logf("16 zones: %d chains, %d rules; %d zones: %d chains, %d rules", c16, r16, config.MaxZones, c64, r64)
	if c64 > 9*c16/2 || r64 > 9*r16/2 {
		t.Errorf("from 16 to 64 zones, chains grew %.1f times and rules %.1f times: not linear", float64(c64)/float64(c16), float64(r64)/float64(r16))
	}
}

// rulesText returns the rules of a chain of a plan as text.
func rulesText(t *testing.T, p *Plan, chain string) []string {
	t.Helper()
	for _, c := range p.Chains {
		if c.Name == chain {
			var out []string
			for _, r := range c.Rules {
				out = append(out, r.String())
			}
			return out
		}
	}
	t.Fatalf("no chain %s", chain)
	return nil
}

func index(rules []string, sub string) int {
	for i, r := range rules {
		if strings.Contains(r, sub) {
			return i
		}
	}
	return -1
}

// TestLimitsArePerSourceAndBeforeConntrack: in every example, no rule
// uses a limit shared by all sources; echo requests to the box meet their
// per-source meter before the conntrack shortcut (a ping session under way
// is "established"); the box's new TCP connections from the internet and
// those through the box (port forwards) have meters of their own.
func TestLimitsArePerSourceAndBeforeConntrack(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		t.Run(name, func(t *testing.T) {
			cfg := loadConfig(t, path)
			p, err := Compile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range p.Chains {
				for _, r := range c.Rules {
					for _, e := range r.Exprs {
						if _, ok := e.(Limit); ok {
							t.Errorf("chain %s: %s: a limit shared by every source", c.Name, r)
						}
					}
				}
			}
			ends := []string{"internet"}
			for _, z := range cfg.Zones {
				if z.Kind != config.KindGuest {
					ends = append(ends, z.Name)
				}
			}
			for _, e := range ends {
				rules := rulesText(t, p, "in-"+e)
				set := "@ping-lan"
				if e == "internet" {
					set = "@ping-wan"
				}
				meter, est := index(rules, "icmp type echo-request update "+set+" { ip saddr limit rate over "), index(rules, "ct state established")
				if meter < 0 || est < 0 || meter > est {
					t.Errorf("in-%s: the ping meter (rule %d) must come before the conntrack shortcut (rule %d):\n%s", e, meter+1, est+1, strings.Join(rules, "\n"))
				}
				if !strings.HasSuffix(rules[meter], `counter name "ping-flood" drop`) {
					t.Errorf("in-%s: %s", e, rules[meter])
				}
			}
			in, fwd := rulesText(t, p, "in-internet"), rulesText(t, p, "fwd-internet")
			synIn, est := index(in, "update @syn-in { ip saddr limit rate over 20/second"), index(in, "ct state established")
			if synIn < 0 || synIn > est || !strings.HasSuffix(in[synIn], `counter name "syn-flood" drop`) {
				t.Errorf("in-internet: no per-source SYN meter before the shortcut:\n%s", strings.Join(in, "\n"))
			}
			if i := index(fwd, "update @syn-fwd { ip saddr limit rate over 100/second"); i != 0 || !strings.HasSuffix(fwd[i], `counter name "syn-flood-fwd" drop`) {
				t.Errorf("fwd-internet: the forwards' SYN meter is not first:\n%s", strings.Join(fwd, "\n"))
			}
			meters := 0
			for _, s := range p.Sets {
				if s.Kind == SetIPv4Meter {
					meters++
				}
			}
			if meters != 4 {
				t.Errorf("%d meters, want syn-in, syn-fwd, ping-wan and ping-lan", meters)
			}
		})
	}
}

// TestPublicResolvers pins the curated list: every address parses, is
// public, appears once per family set, and the well-known services are in.
func TestPublicResolvers(t *testing.T) {
	seen := map[netip.Addr]string{}
	for _, r := range publicResolvers() {
		if !strings.HasPrefix(r.source, "https://") || r.provider == "" {
			t.Errorf("%q: the provider and its source page are required", r.provider)
		}
		for _, s := range r.addrs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				t.Errorf("%s: %v", r.provider, err)
				continue
			}
			if a.IsPrivate() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.Zone() != "" || a.Is4In6() {
				t.Errorf("%s: %v is not a public unicast address", r.provider, a)
			}
			if p, dup := seen[a]; dup {
				t.Errorf("%v listed by %s and %s", a, p, r.provider)
			}
			seen[a] = r.provider
		}
	}
	for _, s := range []string{"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "1.1.1.3", "9.9.9.9", "149.112.112.112",
		"208.67.222.222", "208.67.220.220", "208.67.222.123", "94.140.14.14", "185.228.168.9", "45.90.28.0", "77.88.8.8",
		"76.76.2.0", "185.222.222.222", "194.242.2.2", "2001:4860:4860::8888", "2606:4700:4700::1111", "2620:fe::fe", "2620:119:35::35"} {
		if _, ok := seen[netip.MustParseAddr(s)]; !ok {
			t.Errorf("%s is not in the list", s)
		}
	}
	v4, v6 := resolverAddrs()
	if len(v4)+len(v6) != len(seen) || len(v4) == 0 || len(v6) == 0 {
		t.Errorf("resolverAddrs: %d IPv4 and %d IPv6 of %d", len(v4), len(v6), len(seen))
	}
}

// TestResolversRefusedToMinorsOnly: the resolver sets exist when a zone
// protects minors; its dns-guard refuses every port to them (ping aside)
// before established flows pass, while plain DNS to them (port 53) is
// still DNAT-ed to the box in every zone, before any forward rule sees
// it. Zones without minors never go through dns-guard.
func TestResolversRefusedToMinorsOnly(t *testing.T) {
	cfg := loadConfig(t, "../../configs/demo.yaml")
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var v4, v6 int
	for _, s := range p.Sets {
		switch s.Name {
		case setResolvers:
			v4 = len(s.Addrs)
		case setResolvers6:
			v6 = len(s.Addrs)
		}
	}
	w4, w6 := resolverAddrs()
	if v4 != len(w4) || v6 != len(w6) {
		t.Errorf("resolver sets hold %d and %d addresses, want %d and %d", v4, v6, len(w4), len(w6))
	}
	guard := rulesText(t, p, "dns-guard")
	want := []string{
		"ip daddr @resolvers icmp type echo-request return",
		`ip daddr @resolvers counter name "resolver-blocked" reject with icmpx admin-prohibited`,
		`ip6 daddr @resolvers6 counter name "resolver-blocked" reject with icmpx admin-prohibited`,
	}
	for _, w := range want {
		if index(guard, w) < 0 {
			t.Errorf("dns-guard lacks %q:\n%s", w, strings.Join(guard, "\n"))
		}
	}
	for _, z := range cfg.Zones {
		rules := rulesText(t, p, "fwd-"+z.Name)
		if got := index(rules, "jump dns-guard") == 0; got != cfg.MinorsZone(&z) {
			t.Errorf("zone %s (minors %v): dns-guard first in fwd-%s is %v", z.Name, cfg.MinorsZone(&z), z.Name, got)
		}
		nat := rulesText(t, p, "prerouting-nat")
		if index(nat, `iifname "`+z.Device()+`" ip daddr != `+z.Address.String()+` udp dport 53 counter name "dns-redirect" dnat ip to `+z.Address.String()+":53") < 0 {
			t.Errorf("zone %s: plain DNS is no longer redirected to the box", z.Name)
		}
	}
	// No minors anywhere: no guard, no resolver sets.
	cfg.DNS.Profiles[0].Minors = false
	p, err = Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(p.String(), "resolvers") {
		t.Error("resolver sets without any zone protecting minors")
	}
}
