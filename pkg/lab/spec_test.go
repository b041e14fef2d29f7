package lab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// schoolSpec is the reference two-uplink, two-zone school.
func schoolSpec() Spec {
	return Spec{
		Uplinks: []UplinkSpec{
			{Name: "renater", Interface: "wan0", BoxAddr: pfx("192.0.2.2/30"), Gateway: addr("192.0.2.1")},
			{Name: "backup", Interface: "wan1", BoxAddr: pfx("192.0.2.6/30"), Gateway: addr("192.0.2.5")},
		},
		Zones: []ZoneSpec{
			{Name: "peda", Interface: "lan0", Subnet: pfx("10.10.0.0/24"), Gateway: addr("10.10.0.1")},
			{Name: "admin", Interface: "lan1", Subnet: pfx("10.20.0.0/24"), Gateway: addr("10.20.0.1"), Client: pfx("10.20.0.42/24")},
		},
	}
}

func TestNormalizeDefaults(t *testing.T) {
	s, err := schoolSpec().normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Zones[0].Client; got != pfx("10.10.0.100/24") {
		t.Errorf("default client = %v, want 10.10.0.100/24", got)
	}
	if got := s.Zones[1].Client; got != pfx("10.20.0.42/24") {
		t.Errorf("explicit client = %v, want 10.20.0.42/24", got)
	}
}

func TestNormalizeRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Spec)
		want   string
	}{
		"gateway outside prefix": {func(s *Spec) { s.Uplinks[0].Gateway = addr("192.0.2.9") }, "not in"},
		"gateway is box address": {func(s *Spec) { s.Uplinks[0].Gateway = addr("192.0.2.2") }, "equals"},
		"broadcast gateway":      {func(s *Spec) { s.Uplinks[0].Gateway = addr("192.0.2.3") }, "broadcast"},
		"ipv6 uplink":            {func(s *Spec) { s.Uplinks[0].BoxAddr = pfx("2001:db8::2/64") }, "IPv4"},
		"duplicate interface":    {func(s *Spec) { s.Zones[1].Interface = "wan0" }, "already used"},
		"duplicate uplink":       {func(s *Spec) { s.Uplinks[1].Name = "renater" }, "duplicate uplink"},
		"duplicate zone":         {func(s *Spec) { s.Zones[1].Name = "peda" }, "duplicate zone"},
		"empty zone name":        {func(s *Spec) { s.Zones[1].Name = "" }, "empty name"},
		"long interface":         {func(s *Spec) { s.Zones[0].Interface = "lan-0123456789ab" }, "longer"},
		"overlapping zones": {func(s *Spec) {
			s.Zones[1].Subnet, s.Zones[1].Gateway, s.Zones[1].Client = pfx("10.10.0.0/16"), addr("10.10.1.1"), pfx("10.10.1.2/16")
		}, "overlap"},
		"reserved range":        {func(s *Spec) { s.Zones[0].Subnet, s.Zones[0].Gateway = pfx("203.0.113.0/24"), addr("203.0.113.1") }, "reserved"},
		"client outside subnet": {func(s *Spec) { s.Zones[1].Client = pfx("10.30.0.5/24") }, "not in"},
		"no 100th host":         {func(s *Spec) { s.Zones[0].Subnet, s.Zones[0].Gateway = pfx("10.10.0.0/28"), addr("10.10.0.1") }, "no host number"},
	} {
		t.Run(name, func(t *testing.T) {
			s := schoolSpec()
			tc.mutate(&s)
			_, err := s.normalize()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("normalize() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestNormalizeDoesNotAliasInput(t *testing.T) {
	in := schoolSpec()
	if _, err := in.normalize(); err != nil {
		t.Fatal(err)
	}
	if in.Zones[0].Client.IsValid() {
		t.Error("normalize wrote the default client address into the caller's spec")
	}
}

func TestPlanAddressing(t *testing.T) {
	s, err := schoolSpec().normalize()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan("0a1b2c", s)
	if err != nil {
		t.Fatal(err)
	}
	wantNS := map[string]string{
		"box": "pl0a1b2c-box", "internet": "pl0a1b2c-inet", "academy": "pl0a1b2c-acad",
		"isp:renater": "pl0a1b2c-i-0", "isp:backup": "pl0a1b2c-i-1",
		"client:peda": "pl0a1b2c-c-0", "client:admin": "pl0a1b2c-c-1",
	}
	for role, want := range wantNS {
		if got := p.nsByRole(role); got != want {
			t.Errorf("namespace of %s = %q, want %q", role, got, want)
		}
	}
	if got := p.nsByRole("isp:nope"); got != "" {
		t.Errorf("unknown role gave %q", got)
	}
	if got, want := p.boxLinks(), []string{"wan0", "wan1", "lan0", "lan1"}; !sameSet(got, want) {
		t.Errorf("box links = %v, want %v", got, want)
	}

	hasAddr := func(role, link, a string) {
		t.Helper()
		if !slices.Contains(p.addrs, addrPlan{role, link, pfx(a)}) {
			t.Errorf("missing address %s on %s in %s", a, link, role)
		}
	}
	hasAddr("isp:renater", "box", "192.0.2.1/30")
	hasAddr("isp:backup", "box", "192.0.2.5/30")
	hasAddr("isp:renater", "inet", "198.51.100.1/30")
	hasAddr("internet", "isp0", "198.51.100.2/30")
	hasAddr("isp:backup", "inet", "198.51.100.5/30")
	hasAddr("internet", "isp1", "198.51.100.6/30")
	hasAddr("internet", "lo", "203.0.113.10/32")
	hasAddr("academy", "lo", "203.0.113.100/32")
	hasAddr("client:peda", "eth0", "10.10.0.100/24")
	hasAddr("client:admin", "eth0", "10.20.0.42/24")

	hasRoute := func(role, link, dst, gw string) {
		t.Helper()
		var d netip.Prefix
		if dst != "default" {
			d = pfx(dst)
		}
		if !slices.Contains(p.routes, routePlan{role, link, d, addr(gw)}) {
			t.Errorf("missing route %s via %s dev %s in %s", dst, gw, link, role)
		}
	}
	hasRoute("isp:renater", "inet", "default", "198.51.100.2")
	hasRoute("internet", "isp0", "192.0.2.0/30", "198.51.100.1")
	hasRoute("internet", "isp1", "192.0.2.4/30", "198.51.100.5")
	hasRoute("internet", "acad", "203.0.113.100/32", "198.51.100.254")
	hasRoute("academy", "inet", "default", "198.51.100.253")
	hasRoute("client:peda", "eth0", "default", "10.10.0.1")

	if !sameSet(p.forwarding, []string{"internet", "isp:renater", "isp:backup"}) {
		t.Errorf("forwarding = %v", p.forwarding)
	}
}

func TestNewPlanRejectsBadID(t *testing.T) {
	if _, err := newPlan("../etc", Spec{}); err == nil {
		t.Fatal("newPlan accepted a malformed ID")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
