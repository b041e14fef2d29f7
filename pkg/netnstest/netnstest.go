// Package netnstest gives a test a fresh network namespace, the one way
// every package's kernel tests enter one. The namespace is unnamed: it
// lives as long as its file descriptor, so nothing is left in /run/netns
// even when the test binary is killed.
package netnstest

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/rtnl"
)

// NS is a fresh network namespace owned by one test.
type NS struct {
	t  testing.TB
	ns netns.NsHandle
}

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces); run `sudo make test`")
	}
}

// New creates a namespace that is closed when the test ends. It skips the
// test when not root. The calling thread is left in its own namespace.
func New(t testing.TB) *NS {
	t.Helper()
	NeedRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netnstest: current namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New() // moves this thread into the new namespace
	if err != nil {
		t.Fatalf("netnstest: new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// This thread must never run Go code again: leave it locked so
		// the runtime ends it with the goroutine.
		runtime.LockOSThread()
		t.Fatalf("netnstest: back to the original namespace: %v", err)
	}
	n := &NS{t: t, ns: ns}
	t.Cleanup(func() { ns.Close() })
	// lo is down in a new namespace; tests expect it up.
	if err := n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatalf("netnstest: lo up: %v", err)
	}
	return n
}

// FD is the namespace's file descriptor (for netlink.NewHandleAt,
// nftables.WithNetNSFd and the like); it is closed with the test.
func (n *NS) FD() int { return int(n.ns) }

// Handle returns a netlink handle acting in the namespace, closed with the
// test.
func (n *NS) Handle() *netlink.Handle {
	n.t.Helper()
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		n.t.Fatalf("netnstest: netlink handle: %v", err)
	}
	n.t.Cleanup(h.Close)
	return h
}

// Do runs f on an OS thread that is inside the namespace, and waits for
// it. Code in f that starts goroutines leaves the namespace with them.
func (n *NS) Do(f func() error) error { return rtnl.Do(n.ns, f) }

// Enter moves a goroutine's thread into the namespace for good: for code
// that must live there (a server loop). The thread is never given back to
// the runtime; call it at the start of a goroutine that ends with the test.
func (n *NS) Enter() error {
	runtime.LockOSThread()
	return netns.Set(n.ns)
}

// Run runs a command in the namespace (tests observe with ip and nft; the
// product never runs them) and returns its combined output.
func (n *NS) Run(stdin string, name string, args ...string) (string, error) {
	n.t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		n.t.Skipf("%s not installed", name)
	}
	dup, err := unix.Dup(int(n.ns))
	if err != nil {
		n.t.Fatalf("netnstest: %v", err)
	}
	f := os.NewFile(uintptr(dup), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", name}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}
