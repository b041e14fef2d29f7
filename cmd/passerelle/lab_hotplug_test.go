package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/lab"
)

// TestMissingInterfaceIsConfiguredWhenItAppears runs the firmware with
// configs/demo.yaml in an empty network namespace: none of its interfaces
// exist. The daemon must keep running, report each missing interface, and
// configure lan0 as soon as the test creates it.
func TestMissingInterfaceIsConfiguredWhenItAppears(t *testing.T) {
	fw, ns := startInEmptyNetns(t)
	fw.waitLog(t, `"msg":"configuration applied"`, 10*time.Second)
	for _, name := range []string{"wan0", "wan1", "lan0", "lan1", "lan2"} {
		fw.waitLog(t, fmt.Sprintf(`"msg":"health warning raised","code":"interface-missing:%s"`, name), 5*time.Second)
	}

	if out, err := exec.Command("ip", "-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0-peer").CombinedOutput(); err != nil {
		t.Fatalf("create lan0: %v: %s", err, out)
	}
	waitUntil(t, "lan0 configured", 5*time.Second, func() bool {
		out, _ := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "lan0").CombinedOutput()
		return strings.Contains(string(out), "inet 10.10.0.1/24")
	})
	fw.waitLog(t, `"msg":"health warning cleared","code":"interface-missing:lan0"`, 5*time.Second)
	if out, _ := exec.Command("ip", "-n", ns, "-o", "link", "show", "lan0").CombinedOutput(); !strings.Contains(string(out), ",UP") {
		t.Errorf("lan0 not set up: %s", out)
	}
	select {
	case err := <-fw.exited:
		t.Fatalf("firmware exited: %v", err)
	default:
	}
	// The others are still reported.
	if strings.Contains(fw.logs.String(), `"code":"interface-missing:lan1"`) && strings.Contains(fw.logs.String(), `"msg":"health warning cleared","code":"interface-missing:lan1"`) {
		t.Error("lan1's warning was cleared though lan1 does not exist")
	}
}

// startInEmptyNetns runs the firmware with configs/demo.yaml in a new,
// empty network namespace and waits until it applied the config.
func startInEmptyNetns(t *testing.T, args ...string) (*firmware, string) {
	t.Helper()
	needRoot(t)
	bin, err := buildFirmware()
	if err != nil {
		t.Fatalf("build firmware: %v", err)
	}
	removeStaleNamespaces(t)
	short := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	ns := fmt.Sprintf("%s%.8s-%d", emptyNetnsPrefix, short, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	dir := t.TempDir()
	args = append([]string{"run", "--config", "../../configs/demo.yaml", "--log-format", "json",
		"--dhcp-lease-dir", filepath.Join(dir, "leases"), "--set-clock", "never"}, args...)
	cmd := exec.Command(bin, args...)
	fw := &firmware{logs: &lockedBuffer{}, exited: make(chan error, 1), cmd: cmd}
	cmd.Stdout, cmd.Stderr = fw.logs, fw.logs
	if err := lab.StartCommand(ns, cmd); err != nil {
		t.Fatal(err)
	}
	go func() { fw.exited <- cmd.Wait(); close(fw.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select { // waitLog may have taken the exit already
		case <-fw.exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("firmware log:\n%s", fw.logs.String())
		}
	})
	fw.waitLog(t, `"msg":"configuration applied"`, 10*time.Second)
	return fw, ns
}

// emptyNetnsPrefix starts the names of the namespaces startInEmptyNetns
// makes: PREFIX<test>-<pid of the test binary>.
const emptyNetnsPrefix = "passerelle-empty-"

// removeStaleNamespaces deletes the namespaces of earlier runs of these
// tests that were killed before their cleanup (their test binary is
// gone).
func removeStaleNamespaces(t *testing.T) {
	names, _ := filepath.Glob("/run/netns/" + emptyNetnsPrefix + "*")
	for _, p := range names {
		name := filepath.Base(p)
		pid, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // that run is still going
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("remove stale namespace %s: %v: %s", name, err, out)
		}
	}
}
