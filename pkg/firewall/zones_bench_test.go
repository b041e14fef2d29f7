package firewall

import (
	"fmt"
	"strings"
	"testing"

	"passerelle/pkg/config"
)

// zonesConfig is a board-less config with n zones on VLAN-like interfaces
// (v1, v2, ...), mixed kinds (a quarter each of pedagogical, guest,
// administrative and DMZ), a forwarding and a rule per ten zones, and a
// port forward into the first DMZ zone: the shape of a large school.
func zonesConfig(n int) []byte {
	var b strings.Builder
	b.WriteString(`version: 1
identity:
  uai: 0599999Y
  name: Lycée à zones
  academy: lille
uplinks:
  - name: renater
    interface: wan0
    address: 192.0.2.2/30
    gateway: 192.0.2.1
zones:
`)
	kinds := []string{"pedagogical", "guest", "administrative", "dmz"}
	profile := map[string]string{"pedagogical": "eleves", "guest": "eleves", "administrative": "personnels", "dmz": ""}
	for i := range n {
		kind := kinds[i%4]
		fmt.Fprintf(&b, "  - name: z%d\n    kind: %s\n    interfaces: [v%d]\n    subnet: 10.%d.%d.0/24\n    address: 10.%d.%d.1\n",
			i, kind, i, 100+i/256, i%256, 100+i/256, i%256)
		if p := profile[kind]; p != "" {
			fmt.Fprintf(&b, "    dns_profile: %s\n", p)
		}
	}
	b.WriteString("firewall:\n  forwardings:\n")
	for i := 2; i < n; i += 10 {
		fmt.Fprintf(&b, "    - {from: z%d, to: internet}\n", i)
	}
	b.WriteString("  rules:\n")
	for i := 0; i+1 < n; i += 10 {
		fmt.Fprintf(&b, "    - {name: r%d, from: z%d, to: z%d, protocol: tcp, ports: [\"443\"], action: accept}\n", i, i, i+1)
	}
	if n > 3 {
		b.WriteString("  port_forwards:\n    - {name: web, protocol: tcp, port: \"443\", to_address: 10.100.3.10}\n")
	}
	b.WriteString(`dns:
  upstreams:
    - address: 203.0.113.10:53
  profiles:
    - name: eleves
      categories: [adult]
    - name: personnels
      categories: [malware]
      minors: false
`)
	return []byte(b.String())
}

func parseZones(t testing.TB, n int) *config.Config {
	t.Helper()
	cfg, err := config.Parse("zones.yaml", zonesConfig(n))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// BenchmarkCompileZones compiles configs of growing zone counts up to the
// cap (config.MaxZones): time and memory must grow linearly.
func BenchmarkCompileZones(b *testing.B) {
	for _, n := range []int{4, 16, config.MaxZones} {
		cfg := parseZones(b, n)
		b.Run(fmt.Sprintf("zones=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var p *Plan
			for b.Loop() {
				var err error
				if p, err = Compile(cfg); err != nil {
					b.Fatal(err)
				}
			}
			_, rules := p.size()
			b.ReportMetric(float64(rules), "rules")
			b.ReportMetric(float64(len(p.Chains)), "chains")
		})
	}
}
