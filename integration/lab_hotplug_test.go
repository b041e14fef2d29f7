package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/netnstest"
)

// TestMissingInterfaceIsConfiguredWhenItAppears runs the firmware with
// configs/demo.yaml in an empty network namespace: none of its interfaces
// exist. The daemon must keep running, report each missing interface, and
// configure lan0 as soon as the test creates it.
func TestMissingInterfaceIsConfiguredWhenItAppears(t *testing.T) {
	fw, ns := startInEmptyNetns(t)
	for _, name := range []string{"wan0", "wan1", "lan0", "lan1", "lan2"} {
		fw.waitEvent(t, 5*time.Second, "health-raised", map[string]string{"code": "interface-missing:" + name})
	}

	if out, err := ns.Run("", "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0-peer"); err != nil {
		t.Fatalf("create lan0: %v: %s", err, out)
	}
	waitUntil(t, "lan0 configured", 5*time.Second, func() bool {
		out, _ := ns.Run("", "ip", "-4", "-o", "addr", "show", "dev", "lan0")
		return strings.Contains(out, "inet 10.10.0.1/24")
	})
	fw.waitEvent(t, 5*time.Second, "health-cleared", map[string]string{"code": "interface-missing:lan0"})
	if out, _ := ns.Run("", "ip", "-o", "link", "show", "lan0"); !strings.Contains(out, ",UP") {
		t.Errorf("lan0 not set up: %s", out)
	}
	if err, ok := fw.exited(); ok {
		t.Fatalf("firmware exited: %v", err)
	}
	// The others are still reported.
	if c := fw.events("health-cleared", map[string]string{"code": "interface-missing:lan1"}); len(c) > 0 {
		t.Errorf("lan1's warning was cleared though lan1 does not exist: %v", c)
	}
}

// startInEmptyNetns runs the firmware with configs/demo.yaml in a fresh,
// empty network namespace (pkg/netnstest: unnamed, gone with the test even
// if it is killed) and waits until it applied the config.
func startInEmptyNetns(t *testing.T, args ...string) (*proc, *netnstest.NS) {
	t.Helper()
	needRoot(t)
	bin := bins(t).passerelle
	ns := netnstest.New(t)
	dir := t.TempDir()
	args = append([]string{"run", "--config", demoConfig, "--log-format", "json",
		"--dhcp-lease-dir", filepath.Join(dir, "leases"), "--set-clock", "never"}, args...)
	// Forked from a thread inside the namespace, the daemon lives there.
	fw := startProc(t, exec.Command(bin, args...), &eventLog{}, func(c *exec.Cmd) error { return ns.Do(c.Start) })
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	return fw, ns
}
