package config

import (
	"strings"
	"testing"
)

// TestLocalDomain: dns.local_domain defaults to home.arpa (RFC 8375), the
// DHCP search domain follows it, and names the DNS filter answers
// otherwise (reverse trees, mDNS, loopback) are refused.
func TestLocalDomain(t *testing.T) {
	c := mustParse(t, minimal)
	if c.DNS.LocalDomain != "home.arpa" {
		t.Errorf("dns.local_domain = %q, want home.arpa", c.DNS.LocalDomain)
	}
	if got := c.Zones[0].DHCP.Domain; got != "peda.passerelle-0751234j.home.arpa" {
		t.Errorf("dhcp domain = %q, want it under dns.local_domain", got)
	}
	c = mustParse(t, minimal+"  local_domain: ecole.internal\n")
	if got := c.Zones[0].DHCP.Domain; got != "peda.passerelle-0751234j.ecole.internal" {
		t.Errorf("dhcp domain = %q, want it under the configured local domain", got)
	}
	for _, bad := range []string{"not a domain", "10.in-addr.arpa", "ip6.arpa", "local", "box.local", "localhost"} {
		list := parseErrors(t, minimal+"  local_domain: "+bad+"\n")
		if len(list) != 1 || !strings.Contains(list[0].Error(), "dns.local_domain") {
			t.Errorf("local_domain %q: errors %v, want one about dns.local_domain", bad, list)
		}
	}
}
