package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"passerelle/pkg/box"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/prometheus/client_golang/prometheus"
)

// withoutComments drops the review comments of a plan's text: the kernel
// does not keep them.
func withoutComments(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func compileFile(t testing.TB, path string) *Plan {
	t.Helper()
	p, err := Compile(loadConfig(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func show(t *testing.T, f *Firewall) string {
	t.Helper()
	var b strings.Builder
	if err := f.Show(&b); err != nil {
		t.Fatalf("show: %v", err)
	}
	return b.String()
}

// TestAppliedTableReadsBackAsPlan applies every example and reads the live
// table back: the kernel holds exactly what the plan's text says.
func TestAppliedTableReadsBackAsPlan(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		t.Run(name, func(t *testing.T) {
			ns := newTestNS(t)
			f := ns.firewall()
			p := compileFile(t, path)
			if err := f.Apply(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			want := withoutComments(p.String())
			if got := show(t, f); got != want {
				t.Errorf("live table differs from the plan:\n%s", lineDiff(want, got))
			}
		})
	}
}

// TestLibraryApplyMatchesNftLoad loads each example twice, once through
// the library and once with `nft -f` of the plan's text, and compares what
// nft lists: the lowering encodes the text exactly as nft does.
func TestLibraryApplyMatchesNftLoad(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		t.Run(name, func(t *testing.T) {
			viaLib, viaNft := newTestNS(t), newTestNS(t)
			p := compileFile(t, path)
			if err := viaLib.firewall().Apply(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			viaNft.mustNft(p.String(), "-f", "-")
			a := viaLib.mustNft("", "list", "table", "inet", TableName)
			b := viaNft.mustNft("", "list", "table", "inet", TableName)
			if a != b {
				t.Errorf("library and nft -f load different tables:\n%s", lineDiff(b, a))
			}
		})
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	ns := newTestNS(t)
	f := ns.firewall()
	p := compileFile(t, "../../configs/examples/lycee.yaml")
	var lists []string
	for range 3 {
		if err := f.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		lists = append(lists, ns.mustNft("", "list", "table", "inet", TableName))
	}
	if lists[0] != lists[1] || lists[1] != lists[2] {
		t.Errorf("applying the same plan again changed the table:\n%s", lineDiff(lists[0], lists[2]))
	}
}

// TestApplyCarriesCountersOver starts from a table whose counters hold
// values (loaded by nft, as a previous firmware would have left it) and
// checks that replacing it keeps them, and drops counters the new plan no
// longer has.
func TestApplyCarriesCountersOver(t *testing.T) {
	ns := newTestNS(t)
	ns.mustNft(`table inet passerelle {
	counter fwd-peda-internet { packets 1234 bytes 567890 }
	counter gone { packets 1 bytes 1 }
}
`, "-f", "-")
	f := ns.firewall()
	p := compileFile(t, "../../configs/demo.yaml")
	for i := range 3 {
		if err := f.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		got, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		vals := map[string]CounterValue{}
		for _, c := range got {
			vals[c.Name] = c
		}
		if v := vals["fwd-peda-internet"]; v.Packets != 1234 || v.Bytes != 567890 {
			t.Errorf("apply %d: fwd-peda-internet = %d packets %d bytes, want 1234 and 567890", i+1, v.Packets, v.Bytes)
		}
		if _, ok := vals["gone"]; ok {
			t.Errorf("apply %d: a counter the plan does not have survived", i+1)
		}
		if len(vals) != len(p.Counters) {
			t.Errorf("apply %d: %d counters in the kernel, plan has %d", i+1, len(vals), len(p.Counters))
		}
	}
}

// TestRefusedRulesetLeavesOldTable makes the kernel refuse a replacement
// (a rule that looks up a set that does not exist, added through the test
// hook) and checks that the previous table is untouched and still works
// as before, counters included.
func TestRefusedRulesetLeavesOldTable(t *testing.T) {
	ns := newTestNS(t)
	f := ns.firewall()
	if err := f.Apply(context.Background(), compileFile(t, "../../configs/demo.yaml")); err != nil {
		t.Fatal(err)
	}
	before := ns.mustNft("", "list", "table", "inet", TableName)
	f.k.breakBatch = func(c *nftables.Conn, tab *nftables.Table) {
		ch := &nftables.Chain{Name: "forward", Table: tab}
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "no-such-set"},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	err := f.Apply(context.Background(), compileFile(t, "../../configs/examples/lycee.yaml"))
	if err == nil {
		t.Fatal("the kernel accepted a rule referencing a missing set")
	}
	t.Logf("refused as expected: %v", err)
	if after := ns.mustNft("", "list", "table", "inet", TableName); after != before {
		t.Errorf("a refused replacement changed the table:\n%s", lineDiff(before, after))
	}
	// The firewall still works afterwards.
	f.k.breakBatch = nil
	if err := f.Apply(context.Background(), compileFile(t, "../../configs/examples/lycee.yaml")); err != nil {
		t.Fatalf("apply after a refusal: %v", err)
	}
}

// TestOtherTablesAreNeverTouched stands in for tailscaled's tables.
func TestOtherTablesAreNeverTouched(t *testing.T) {
	ns := newTestNS(t)
	ns.mustNft(`table ip filter {
	chain ts-forward {
		type filter hook forward priority filter; policy accept;
		meta mark & 0x00ff0000 == 0x00040000 accept
	}
}
table inet other {
	set s {
		type ipv4_addr
		elements = { 1.2.3.4 }
	}
}
`, "-f", "-")
	before := ns.mustNft("", "list", "ruleset")
	f := ns.firewall()
	for _, path := range []string{"../../configs/demo.yaml", "../../configs/examples/lycee.yaml"} {
		if err := f.Apply(context.Background(), compileFile(t, path)); err != nil {
			t.Fatal(err)
		}
	}
	after := ns.mustNft("", "list", "ruleset")
	for _, table := range []string{"table ip filter", "table inet other"} {
		if section(before, table) != section(after, table) {
			t.Errorf("%s changed:\nbefore:\n%s\nafter:\n%s", table, section(before, table), section(after, table))
		}
	}
}

// section returns one table of an nft listing.
func section(list, header string) string {
	i := strings.Index(list, header+" {")
	if i < 0 {
		return ""
	}
	j := strings.Index(list[i:], "\n}\n")
	return list[i : i+j+3]
}

// spacedCIDRs returns n /30s with a gap between each, so that none merge:
// n prefixes in, n intervals in the kernel.
func spacedCIDRs(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	base := v4(netip.MustParseAddr("100.64.0.0"))
	for i := range out {
		out[i] = netip.PrefixFrom(addr4(base+uint32(i)*8), 30)
	}
	return out
}

// TestFiftyThousandCIDRsAllReachTheKernel guards against the silent
// truncation of large set additions (field notes): 50,000 CIDRs in,
// exactly 50,000 intervals in the kernel, counted by the library and by
// nft.
func TestFiftyThousandCIDRsAllReachTheKernel(t *testing.T) {
	const n = 50_000
	ns := newTestNS(t)
	cfg := loadConfig(t, "../../configs/examples/lycee.yaml")
	cfg.Tunnel.AcademyPrefixes = spacedCIDRs(n)
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := ns.firewall()
	if err := f.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	c, err := f.readConn()
	if err != nil {
		t.Fatal(err)
	}
	els, err := c.GetSetElements(&nftables.Set{Table: ourTable(), Name: setAcademy, KeyType: nftables.TypeIPAddr, Interval: true})
	if err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, e := range els {
		if !e.IntervalEnd {
			starts++
		}
	}
	if starts != n {
		t.Errorf("the kernel holds %d intervals, want %d", starts, n)
	}
	out := ns.mustNft("", "list", "set", "inet", TableName, setAcademy)
	if got := strings.Count(out, "/30"); got != n {
		t.Errorf("nft lists %d /30 elements, want %d", got, n)
	}
}

func TestSetBlockedIsKeptAcrossReloads(t *testing.T) {
	ns := newTestNS(t)
	f := ns.firewall()
	ctx := context.Background()
	doh := []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700:4700::1111"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1")}
	// Before the first apply: kept, then loaded with the table.
	if err := f.SetBlocked(ctx, doh[:1]); err != nil {
		t.Fatal(err)
	}
	p := compileFile(t, "../../configs/demo.yaml")
	if err := f.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := elements(t, ns, setBlocked); got != "1.1.1.1" {
		t.Errorf("after the first apply: blocked = %q", got)
	}
	if err := f.SetBlocked(ctx, doh); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got := elements(t, ns, setBlocked); got != "1.1.1.1, 8.8.8.8" {
			t.Errorf("%s: blocked = %q", when, got)
		}
		if got := elements(t, ns, setBlocked6); got != "2606:4700:4700::1111" {
			t.Errorf("%s: blocked6 = %q", when, got)
		}
	}
	check("after SetBlocked")
	for i := range 3 {
		if err := f.Apply(ctx, compileFile(t, "../../configs/examples/lycee.yaml")); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("after reload %d", i+1))
	}
	if err := f.SetBlocked(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := elements(t, ns, setBlocked); got != "" {
		t.Errorf("after clearing: blocked = %q", got)
	}
}

func elements(t *testing.T, ns *testNS, set string) string {
	t.Helper()
	out := ns.mustNft("", "list", "set", "inet", TableName, set)
	m := regexp.MustCompile(`(?s)elements = \{ (.*?) \}`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return strings.Join(strings.Fields(m[1]), " ")
}

func TestSetBlockedValidatesAddresses(t *testing.T) {
	tests := []struct {
		name     string
		in       []netip.Addr
		v4, v6   string
		wantFail bool
	}{
		{name: "unset address", in: []netip.Addr{{}}, wantFail: true},
		{name: "zone", in: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}, wantFail: true},
		{name: "sinkhole answers left out",
			in: []netip.Addr{netip.IPv4Unspecified(), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::"), netip.MustParseAddr("224.0.0.1"), netip.MustParseAddr("9.9.9.9")},
			v4: "[9.9.9.9]", v6: "[]"},
		{name: "mapped, duplicated, unsorted",
			in: []netip.Addr{netip.MustParseAddr("::ffff:8.8.8.8"), netip.MustParseAddr("2620:fe::fe"), netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("8.8.8.8")},
			v4: "[1.1.1.1 8.8.8.8]", v6: "[2620:fe::fe]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v4, v6, err := splitBlocked(tt.in)
			if (err != nil) != tt.wantFail {
				t.Fatalf("err = %v, want failure %v", err, tt.wantFail)
			}
			if err == nil && (fmt.Sprint(v4) != tt.v4 || fmt.Sprint(v6) != tt.v6) {
				t.Errorf("got %v %v, want %s %s", v4, v6, tt.v4, tt.v6)
			}
		})
	}
}

// TestMetricsReadTheKernelCounters: the registry gets the apply metrics
// and every named counter of the live table.
func TestMetricsReadTheKernelCounters(t *testing.T) {
	ns := newTestNS(t)
	reg := prometheus.NewRegistry()
	f := New(box.Deps{Metrics: reg})
	f.k.nsFd, f.k.nsSet = ns.fd, true
	p := compileFile(t, "../../configs/demo.yaml")
	if err := f.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	if got["passerelle_firewall_packets_total"] != len(p.Counters) || got["passerelle_firewall_bytes_total"] != len(p.Counters) {
		t.Errorf("counter metrics: %d packets and %d bytes series, want %d each", got["passerelle_firewall_packets_total"], got["passerelle_firewall_bytes_total"], len(p.Counters))
	}
	if got["passerelle_firewall_applies_total"] != 1 || got["passerelle_firewall_apply_seconds"] != 1 {
		t.Errorf("apply metrics missing: %v", got)
	}
}
