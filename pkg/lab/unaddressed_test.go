package lab

import (
	"net/netip"
	"testing"
)

func TestUnaddressedClientHasLinkButNoAddressOrRoute(t *testing.T) {
	spec, err := Spec{Zones: []ZoneSpec{
		{Name: "peda", Interface: "lan0", Subnet: netip.MustParsePrefix("10.10.0.0/24"), Gateway: netip.MustParseAddr("10.10.0.1"), Unaddressed: true},
		{Name: "admin", Interface: "lan1", Subnet: netip.MustParsePrefix("10.20.0.0/24"), Gateway: netip.MustParseAddr("10.20.0.1")},
	}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan("a1b2c3", spec)
	if err != nil {
		t.Fatal(err)
	}
	peda, admin := RoleClient("peda"), RoleClient("admin")
	links := 0
	for _, v := range p.veths {
		if v.bRole == peda {
			links++
		}
	}
	if links != 1 {
		t.Errorf("unaddressed client has %d links, want 1", links)
	}
	count := func(role string) (n int) {
		for _, a := range p.addrs {
			if a.role == role {
				n++
			}
		}
		for _, r := range p.routes {
			if r.role == role {
				n++
			}
		}
		return n
	}
	if n := count(peda); n != 0 {
		t.Errorf("unaddressed client has %d addresses and routes", n)
	}
	if n := count(admin); n != 2 {
		t.Errorf("addressed client has %d addresses and routes, want 2", n)
	}
}
