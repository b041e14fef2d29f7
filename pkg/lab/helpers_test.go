package lab_test

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/lab"
	"passerelle/pkg/rtnl"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces)")
	}
}

// schoolSpec is the reference school: two uplinks, two zones.
func schoolSpec() lab.Spec {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	return lab.Spec{
		Uplinks: []lab.UplinkSpec{
			{Name: "renater", Interface: "wan0", BoxAddr: p("192.0.2.2/30"), Gateway: a("192.0.2.1")},
			{Name: "backup", Interface: "wan1", BoxAddr: p("192.0.2.6/30"), Gateway: a("192.0.2.5")},
		},
		Zones: []lab.ZoneSpec{
			{Name: "peda", Interface: "lan0", Subnet: p("10.10.0.0/24"), Gateway: a("10.10.0.1")},
			{Name: "admin", Interface: "lan1", Subnet: p("10.20.0.0/24"), Gateway: a("10.20.0.1")},
		},
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// upLab builds a lab whose teardown is registered with t, so it happens
// even when the test fails.
func upLab(t *testing.T, spec lab.Spec) *lab.Lab {
	t.Helper()
	start := time.Now()
	l, err := lab.Up(t.Context(), spec, testLogger(t))
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("lab %s up in %v", l.ID, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return l
}

// ipExec runs a command inside a namespace the way an operator would.
func ipExec(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// linksIn lists the links of a namespace ("" for the root namespace).
func linksIn(t *testing.T, ns string) []netlink.Link {
	t.Helper()
	var (
		handle *netlink.Handle
		err    error
	)
	if ns == "" {
		handle, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		nsh, oerr := netns.GetFromName(ns)
		if oerr != nil {
			t.Fatalf("open namespace %s: %v", ns, oerr)
		}
		defer nsh.Close()
		handle, err = netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	}
	if err != nil {
		t.Fatalf("netlink handle for %q: %v", ns, err)
	}
	defer handle.Close()
	links, err := rtnl.Dump(handle.LinkList)
	if err != nil {
		t.Fatalf("list links in %q: %v", ns, err)
	}
	return links
}

func linkStats(t *testing.T, ns, name string) *netlink.LinkStatistics {
	t.Helper()
	for _, l := range linksIn(t, ns) {
		if l.Attrs().Name == name {
			return l.Attrs().Statistics
		}
	}
	t.Fatalf("no link %s in %s", name, ns)
	return nil
}

// nsIdent is a namespace's identity (nsfs device and inode).
type nsIdent struct{ dev, ino uint64 }

func statNS(t *testing.T, path string) (nsIdent, bool) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsIdent{}, false
	}
	return nsIdent{st.Dev, st.Ino}, true
}

// processesIn scans every thread of every process for one living in the
// given namespaces.
func processesIn(t *testing.T, idents map[nsIdent]bool) []int {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range paths {
		if id, ok := statNS(t, p); ok && idents[id] {
			pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
			pids = append(pids, pid)
		}
	}
	return pids
}

// runArtifacts lists what a run left on the machine: namespace files,
// mounts, state file and root-namespace links named after it.
func runArtifacts(t *testing.T, id string) []string {
	t.Helper()
	var left []string
	files, _ := filepath.Glob(filepath.Join(lab.NetnsDir, "pl"+id+"-*"))
	left = append(left, files...)
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(mountinfo)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "pl"+id) {
			left = append(left, "mount: "+sc.Text())
		}
	}
	if _, err := os.Stat(filepath.Join(lab.DefaultStateDir, id+".json")); err == nil {
		left = append(left, "state file")
	}
	for _, l := range linksIn(t, "") {
		if strings.HasPrefix(l.Attrs().Name, "pl"+id) {
			left = append(left, "root link "+l.Attrs().Name)
		}
	}
	return left
}

func requireNoArtifacts(t *testing.T, id string) {
	t.Helper()
	if left := runArtifacts(t, id); len(left) > 0 {
		t.Errorf("lab %s left behind:\n%s", id, strings.Join(left, "\n"))
	}
}

// rootVeths returns the names of veth links in the root namespace.
func rootVeths(t *testing.T) map[string]bool {
	t.Helper()
	veths := map[string]bool{}
	for _, l := range linksIn(t, "") {
		if l.Type() == "veth" {
			veths[l.Attrs().Name] = true
		}
	}
	return veths
}

// waitFor polls cond until it holds or the timeout expires.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reapOrGone waits until pid no longer exists, reaping it if it became our
// child (the test process is a subreaper while helpers run).
func reapOrGone(pid int, timeout time.Duration) bool {
	return waitFor(timeout, func() bool {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return errors.Is(err, os.ErrNotExist)
	})
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
