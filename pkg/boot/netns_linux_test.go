package boot

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"passerelle/pkg/netnstest"
)

// TestNetworkSetupStaysInItsNamespace brings lo up and applies the router
// sysctls in a fresh network namespace (pkg/netnstest), as the init does
// in its own: the namespace gets them, the test's own namespace keeps its
// values.
func TestNetworkSetupStaysInItsNamespace(t *testing.T) {
	ns := netnstest.New(t)
	if out, err := ns.Run("", "ip", "link", "set", "lo", "down"); err != nil {
		t.Fatalf("lo down: %v: %s", err, out)
	}
	keys := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter"}
	host := map[string]string{}
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		host[k] = string(b)
	}
	var summary string
	if err := ns.Do(func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		var err error
		summary, err = applySysctls(slog.New(slog.NewTextHandler(io.Discard, nil)), Sysctls(1<<30))
		return err
	}); err != nil {
		t.Fatalf("network setup: %v (%s)", err, summary)
	}
	t.Logf("sysctls: %s", summary)
	for k, want := range map[string]string{keys[0]: "1", keys[1]: "2"} {
		if out, err := ns.Run("", "cat", k); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s in the namespace: %q, %v; want %s", k, out, err, want)
		}
	}
	if out, _ := ns.Run("", "ip", "-o", "link", "show", "lo"); !strings.Contains(out, ",UP") {
		t.Errorf("lo not up in the namespace: %s", out)
	}
	for _, k := range keys {
		if b, _ := os.ReadFile(k); string(b) != host[k] {
			t.Errorf("%s changed in the test's own namespace: %q, was %q", k, b, host[k])
		}
	}
}
