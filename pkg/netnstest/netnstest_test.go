package netnstest_test

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/netnstest"
)

// TestNamespaceIsFreshAndSeparate: a link made in the namespace is seen
// there (through Handle, Do and Run) and not in the test's own namespace.
func TestNamespaceIsFreshAndSeparate(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Handle()
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-nstest"}}); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { _, err := netlink.LinkByName("br-nstest"); return err }); err != nil {
		t.Errorf("Do does not see the link: %v", err)
	}
	if out, err := ns.Run("", "ip", "-o", "link"); err != nil || !strings.Contains(out, "br-nstest") {
		t.Errorf("Run: %v %s", err, out)
	}
	if _, err := netlink.LinkByName("br-nstest"); err == nil {
		t.Error("the link leaked into the test's own namespace")
	}
}
