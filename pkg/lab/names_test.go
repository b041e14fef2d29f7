package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestNewIDFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, err := newID()
		if err != nil {
			t.Fatal(err)
		}
		if !idRE.MatchString(id) {
			t.Fatalf("newID() = %q, want 6 lowercase hex characters", id)
		}
		seen[id] = true
	}
	// 100 draws out of 2^24: a collision would be a strong hint of a
	// broken random source.
	if len(seen) < 99 {
		t.Errorf("only %d distinct IDs out of 100", len(seen))
	}
}

// maxSpec is the largest spec the lab accepts, with the longest names.
func maxSpec() Spec {
	var s Spec
	for i := range maxUplinks {
		s.Uplinks = append(s.Uplinks, UplinkSpec{
			Name:      fmt.Sprintf("uplink-with-a-long-name-%d", i),
			Interface: fmt.Sprintf("wan-interface%02d", i), // 15 bytes
			BoxAddr:   netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 2)}), 30),
			Gateway:   netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 1)}),
		})
	}
	for i := range maxZones {
		s.Zones = append(s.Zones, ZoneSpec{
			Name:      fmt.Sprintf("zone-%d", i),
			Interface: fmt.Sprintf("lan-interface%02d", i),
			Subnet:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24),
			Gateway:   netip.AddrFrom4([4]byte{10, byte(i), 0, 1}),
		})
	}
	return s
}

func TestNamesFitIFNAMSIZ(t *testing.T) {
	spec, err := maxSpec().normalize()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan("abcdef", spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(p.namespaces), 3+maxUplinks+maxZones; got != want {
		t.Fatalf("%d namespaces, want %d", got, want)
	}
	seen := map[string]bool{}
	for _, ns := range p.namespaces {
		if len(ns.name) > ifNameMax {
			t.Errorf("namespace name %q is %d bytes, limit %d", ns.name, len(ns.name), ifNameMax)
		}
		if id, ok := parseNSName(ns.name); !ok || id != "abcdef" {
			t.Errorf("parseNSName(%q) = %q, %v", ns.name, id, ok)
		}
		if seen[ns.name] {
			t.Errorf("duplicate namespace name %q", ns.name)
		}
		seen[ns.name] = true
	}
	links := map[string]bool{} // role/link, unique per namespace
	for _, v := range p.veths {
		for _, end := range [][2]string{{v.aRole, v.aLink}, {v.bRole, v.bLink}} {
			if err := validIfName(end[1]); err != nil {
				t.Errorf("%s: %v", end[0], err)
			}
			key := end[0] + "/" + end[1]
			if links[key] {
				t.Errorf("duplicate link %s", key)
			}
			links[key] = true
		}
	}
}

func TestParseNSName(t *testing.T) {
	for name, wantOK := range map[string]bool{
		"pl0a1b2c-box":  true,
		"pl0a1b2c-i-12": true,
		"pl0a1b2c-c-0":  true,
		"pl0a1b2c":      false,
		"pl0a1b2-box":   false,
		"pl0A1B2C-box":  false,
		"xl0a1b2c-box":  false,
		"pl0a1b2c-":     false,
		"pl0a1b2c-a/b":  false,
		"blue":          false,
	} {
		id, ok := parseNSName(name)
		if ok != wantOK {
			t.Errorf("parseNSName(%q) ok = %v, want %v", name, ok, wantOK)
		}
		if ok && id != "0a1b2c" {
			t.Errorf("parseNSName(%q) id = %q", name, id)
		}
	}
}

func TestValidIfName(t *testing.T) {
	for _, ok := range []string{"wan0", "lan1", "eth0.100", "a-b_c", strings.Repeat("x", 15)} {
		if err := validIfName(ok); err != nil {
			t.Errorf("validIfName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "lo", ".", "..", "a/b", "a b", "a:b", strings.Repeat("x", 16), "wän0"} {
		if err := validIfName(bad); err == nil {
			t.Errorf("validIfName(%q) accepted", bad)
		}
	}
}
