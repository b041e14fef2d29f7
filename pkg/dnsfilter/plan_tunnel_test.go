package dnsfilter

import (
	"strings"
	"testing"

	"passerelle/pkg/config"
)

const tunnelTail = `tunnel:
  enabled: ENABLED
  control_url: https://headscale.ac-lille.fr
  academy_prefixes: [10.200.0.0/24]
  academy_domains: [ac-lille.fr, Intranet.Lille.Example]
  academy_resolvers: [10.200.0.53:53]
  tailnet_domain: ts.ac-lille.fr
`

func tunnelPlan(t *testing.T, enabled string) string {
	t.Helper()
	y := strings.ReplaceAll(strings.ReplaceAll(testConfig, "UPSTREAM", "192.0.2.53:53"), "LISTS", "/perm/lists/ut1") +
		strings.ReplaceAll(tunnelTail, "ENABLED", enabled)
	cfg, err := config.Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p.String()
}

// The academy's domains go to its resolvers and the tailnet's domain to
// tailscaled's resolver, only while the tunnel is enabled.
func TestCompileTunnelForwards(t *testing.T) {
	s := tunnelPlan(t, "true")
	for _, want := range []string{
		"forward ac-lille.fr -> 10.200.0.53:53\n",
		"forward intranet.lille.example -> 10.200.0.53:53\n",
		"forward ts.ac-lille.fr -> 100.100.100.100:53\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plan lacks %q:\n%s", want, s)
		}
	}
	if s := tunnelPlan(t, "false"); strings.Contains(s, "forward ") {
		t.Errorf("tunnel disabled, yet forwards:\n%s", s)
	}
}

func TestTunnelResolversMustBeInAcademyPrefixes(t *testing.T) {
	y := strings.ReplaceAll(strings.ReplaceAll(testConfig, "UPSTREAM", "192.0.2.53:53"), "LISTS", "/perm/lists/ut1") +
		strings.ReplaceAll(strings.ReplaceAll(tunnelTail, "ENABLED", "true"), "10.200.0.53:53", "192.0.2.53:53")
	_, err := config.Parse("t.yaml", []byte(y))
	if err == nil || !strings.Contains(err.Error(), "tunnel.academy_resolvers[0]") {
		t.Errorf("a resolver outside the academy prefixes: err = %v", err)
	}
}
