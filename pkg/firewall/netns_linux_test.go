package firewall

import (
	"os/exec"
	"strings"
	"testing"

	"passerelle/pkg/box"
	"passerelle/pkg/netnstest"
)

// testNS is a fresh network namespace (pkg/netnstest, the one way kernel
// tests enter one: unnamed, gone with the test even if it is killed) with
// what the firewall's tests observe it by.
type testNS struct {
	*netnstest.NS
	t  *testing.T
	fd int
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	ns := netnstest.New(t)
	return &testNS{NS: ns, t: t, fd: ns.FD()}
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
	return n.Run(stdin, "nft", args...)
}

func (n *testNS) mustNft(stdin string, args ...string) string {
	n.t.Helper()
	out, err := n.nft(stdin, args...)
	if err != nil {
		n.t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
