package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/netnstest"
)

// failingLast wraps the last component of the box: its Apply fails for
// one plan after the component applied it (a half-done apply), as a
// kernel refusal would.
type failingLast struct {
	box.Component
	failFor string // the plan text whose apply fails
	before  func() // called just before failing: B is fully applied then
}

func (f failingLast) Apply(ctx context.Context, p box.Plan) error {
	if err := f.Component.Apply(ctx, p); err != nil {
		return err
	}
	if p.String() == f.failFor {
		f.before()
		return errors.New("injected failure after a complete apply")
	}
	return nil
}

// TestRollbackRestoresEveryComponent applies config A with every real
// component in a fresh network namespace, then config B (an admin zone
// bridged over two ports and renumbered, uplink priorities swapped, a port
// forward, another DNS policy) whose last component fails: the box rolls
// every component back, and the namespace (links, bridges, masters,
// addresses, ip rules, routes of every table, the nftables table, the
// listening sockets, forwarding) must equal what A made, exactly.
func TestRollbackRestoresEveryComponent(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Handle()
	for _, pair := range [][2]string{{"wan0", "isp0"}, {"wan1", "isp1"}, {"lan0", "cl0"}, {"lan1", "cl1"}, {"lan2", "cl2"}, {"lan3", "cl3"}} {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}
		if err := h.LinkAdd(v); err != nil {
			t.Fatalf("veth %s: %v", pair[0], err)
		}
		peer, err := h.LinkByName(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(peer); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	a := loadTestConfig(t, dir, "a.yaml", func(s string) string { return s })
	b := loadTestConfig(t, dir, "b.yaml", func(s string) string {
		s = strings.Replace(s, "    interfaces: [lan1]\n    subnet: 10.20.0.0/24\n    address: 10.20.0.1\n",
			"    interfaces: [lan1, lan3]\n    subnet: 10.21.0.0/24\n    address: 10.21.0.1\n", 1)
		s = strings.Replace(s, "    interface: wan1\n    priority: 2\n", "    interface: wan1\n    priority: 1\n", 1)
		s = strings.Replace(s, "  - name: renater\n    interface: wan0\n", "  - name: renater\n    interface: wan0\n    priority: 2\n", 1)
		s = strings.Replace(s, "firewall:\n  forwardings:\n    - {from: admin, to: internet}\n",
			"firewall:\n  forwardings:\n    - {from: admin, to: internet}\n  port_forwards:\n    - {name: web, uplink: renater, protocol: tcp, port: 8080, to_address: 10.21.0.50, to_port: 80}\n", 1)
		s = strings.Replace(s, "      safe_search: off\n", "      safe_search: strict\n", 1)
		return s
	})

	c, err := compose(slog.New(slog.DiscardHandler), composeOptions{leaseDir: filepath.Join(dir, "leases")})
	if err != nil {
		t.Fatal(err)
	}
	n := len(c.components)
	last := c.components[n-1]
	planB, err := last.Plan(b)
	if err != nil {
		t.Fatal(err)
	}
	var stateA, stateB, stateAfter string
	fail := failingLast{Component: last, failFor: planB.String(), before: func() { stateB = nsState(t, ns) }}
	comps := append(append([]box.Component(nil), c.components[:n-1]...), fail)
	bx := box.New(slog.New(slog.DiscardHandler), comps...)

	if err := ns.Do(func() error {
		if _, err := bx.Apply(context.Background(), a); err != nil {
			return fmt.Errorf("apply A: %w", err)
		}
		stateA = nsState(t, ns)
		rep, err := bx.Apply(context.Background(), b)
		if err == nil {
			return errors.New("apply B succeeded; the injected failure did not happen")
		}
		if !rep.RolledBack || rep.RollbackErr != nil {
			return fmt.Errorf("apply B: rolled back %v, rollback error %v", rep.RolledBack, rep.RollbackErr)
		}
		stateAfter = nsState(t, ns)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stateA != stateAfter {
		t.Errorf("state after rollback differs from A's:\n--- A\n%s\n--- after rollback\n%s", stateA, stateAfter)
	}
	if bx.Current() != a {
		t.Error("the current config is not A after the rollback")
	}
	// B did reach the kernel before the failure: the rollback undid it.
	for _, s := range []string{"br-admin", "10.21.0.1/24", "dport 8080"} {
		if !strings.Contains(stateB, s) {
			t.Errorf("B's %s never reached the kernel: the test proves nothing", s)
		}
		if strings.Contains(stateAfter, s) {
			t.Errorf("B's %s left after rollback", s)
		}
	}
}

func loadTestConfig(t *testing.T, dir, name string, edit func(string) string) *config.Config {
	t.Helper()
	data, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := edit(string(data))
	// Lists from a directory the test owns; the box's own files off /perm.
	text = strings.Replace(text, "dns:\n", "dns:\n  lists:\n    directory: "+filepath.Join(dir, "lists")+"\n", 1)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cfg
}

var (
	counters  = regexp.MustCompile(`packets \d+ bytes \d+`)
	linkIndex = regexp.MustCompile(`^\d+: `)
	ifIndex   = regexp.MustCompile(`@if\d+`)
	// A link set up once keeps the queueing discipline the kernel gave
	// it (noop becomes noqueue) after it is set down again: not state
	// the box owns.
	qdisc = regexp.MustCompile(`qdisc \S+ `)
)

// nsState renders what the components own in the namespace, in a form
// that does not depend on the order of operations (counters zeroed, link
// indexes dropped, lines sorted where the kernel's order is not meaning).
func nsState(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	var b strings.Builder
	section := func(name string, sortLines bool, args ...string) {
		out, err := ns.Run("", args[0], args[1:]...)
		if err != nil {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for i, l := range lines {
			l = counters.ReplaceAllString(l, "packets 0 bytes 0")
			l = linkIndex.ReplaceAllString(l, "")
			l = qdisc.ReplaceAllString(l, "")
			lines[i] = ifIndex.ReplaceAllString(l, "")
		}
		if sortLines {
			sort.Strings(lines)
		}
		fmt.Fprintf(&b, "## %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	section("links", true, "ip", "-o", "link", "show")
	section("addresses", true, "ip", "-o", "-4", "addr", "show")
	section("rules", false, "ip", "rule", "show")
	// IPv4 only: the box manages no IPv6 routes, and the kernel's own
	// link-local ones follow carrier on the peers of the test's veths.
	section("routes", true, "ip", "-4", "route", "show", "table", "all")
	section("nftables", false, "nft", "list", "table", "inet", "passerelle")
	section("listening", true, "ss", "-Hlntu")
	section("forwarding", false, "cat", "/proc/sys/net/ipv4/ip_forward")
	return b.String()
}
