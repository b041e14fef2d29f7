package main

import (
	"strings"
	"testing"
)

func TestFirewallCommandUsage(t *testing.T) {
	for _, args := range [][]string{{"firewall"}, {"firewall", "list"}, {"firewall", "show", "extra"}} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "expected show") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a usage message", args, code, stderr.String())
		}
	}
}
