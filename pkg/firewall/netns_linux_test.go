package firewall

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"passerelle/pkg/box"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNS is a fresh, unnamed network namespace: it lives as long as its
// fd, so nothing is left in /run/netns even if the test is killed.
type testNS struct {
	t  *testing.T
	fd int
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables); run `sudo make test`")
	}
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	needRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // moves this thread into the new namespace
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the original namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return &testNS{t: t, fd: int(ns)}
}

// firewall returns a Firewall acting in the namespace.
func (n *testNS) firewall() *Firewall {
	f := New(box.Deps{})
	f.k.nsFd, f.k.nsSet = n.fd, true
	return f
}

// nft runs the nft command in the namespace (tests observe with nft; the
// product never runs it).
func (n *testNS) nft(stdin string, args ...string) (string, error) {
	n.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		n.t.Skip("nft not installed (Debian package nftables)")
	}
	dup, err := unix.Dup(n.fd)
	if err != nil {
		n.t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "nft"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func (n *testNS) mustNft(stdin string, args ...string) string {
	n.t.Helper()
	out, err := n.nft(stdin, args...)
	if err != nil {
		n.t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
