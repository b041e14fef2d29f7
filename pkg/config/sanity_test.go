package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestEveryListHasAMaximum: each list of the format carries a max tag,
// which the schema (maxItems) and docs/configuration.md show and
// validation enforces (issue 12).
func TestEveryListHasAMaximum(t *testing.T) {
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for _, f := range structFields(typ).list {
			sf := typ.Field(f.index)
			ft := sf.Type
			if ft.Kind() == reflect.Slice && !reflect.PointerTo(ft).Implements(textUnmarshalerType) {
				if f.max == 0 {
					t.Errorf("%s is a list without a max tag", join(path, f.key))
				}
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshalerType) {
				walk(ft, join(path, f.key))
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

// TestAbsurdListLengths: 60,000 probe targets (the case of the issue)
// are refused quickly, with the field named, and the items themselves
// are not checked one by one.
func TestAbsurdListLengths(t *testing.T) {
	var b strings.Builder
	for i := range 60000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "10.%d.%d.%d", i>>16, i>>8&255, i&255)
	}
	doc := strings.Replace(minimal, "    gateway: 193.50.10.5\n", "    gateway: 193.50.10.5\n    probe: {targets: ["+b.String()+"]}\n", 1)
	start := time.Now()
	list := parseErrors(t, doc)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("refusing 60,000 targets took %s", took)
	}
	checkErrors(t, list, []string{"test.yaml:11:22: uplinks[0].probe.targets: 60000 items, at most 16"})

	deny := strings.Repeat("example.org, ", 10001)
	list = parseErrors(t, minimal+"      deny: ["+strings.TrimSuffix(deny, ", ")+"]\n")
	checkErrors(t, list, []string{"test.yaml:21:13: dns.profiles[0].deny: 10001 items, at most 10000"})
}

// TestSanityBoundaries: what is close to a refused case stays accepted:
// a /31 uplink, a forward of 16,384 ports, a locally administered MAC.
func TestSanityBoundaries(t *testing.T) {
	doc := strings.Replace(minimal, "address: 193.50.10.6/30\n    gateway: 193.50.10.5", "address: 193.50.10.6/31\n    gateway: 193.50.10.7", 1)
	doc = strings.Replace(doc, "    dns_profile: eleves\n", "    dns_profile: eleves\n    dhcp: {reservations: [{mac: \"02:00:00:00:00:01\", address: 10.75.12.5}]}\n", 1)
	doc += "firewall:\n  port_forwards: [{name: rtp, protocol: udp, port: 10000-26383, to_address: 10.75.12.20}]\n"
	mustParse(t, doc)
}
