// Command firewall-bench times replacing the box's nftables table through
// pkg/firewall (google/nftables, one netlink batch) against `nft -f`
// loading the same ruleset text, in the same run: sets of 1k to 100k CIDRs
// and 500 config rules. It acts on the network namespace it runs in: run
// it through run.sh, which gives it a fresh one.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/firewall"
)

func main() {
	cfgPath := flag.String("config", "configs/examples/lycee.yaml", "base configuration")
	sizes := flag.String("sizes", "1000,10000,50000,100000", "set sizes (CIDRs in the academy set)")
	rules := flag.Int("rules", 500, "config rules for the rules case (0: skip)")
	zones := flag.Int("zones", config.MaxZones, "zones for the zones case (0: skip)")
	runs := flag.Int("runs", 5, "timed replacements per case and tool")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("needs root (nftables in a network namespace): sudo bash tools/bench/firewall/run.sh")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		fail("nft not found (Debian package nftables)")
	}
	out, _ := exec.Command(nft, "--version").Output()
	fmt.Printf("nft: %s", out)
	fmt.Printf("%-22s %14s %14s %14s %14s %s\n", "case", "library min", "library med", "nft -f min", "nft -f med", "kernel check")

	var cases []benchCase
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			fail("bad size " + s)
		}
		cfg := load(*cfgPath)
		cfg.Tunnel.Enabled = true
		// A config holds at most maxAcademyPrefixes (issue 12): the
		// set sizes beyond it measure the library's batches and the
		// kernel's set as before the cap, the config validated with
		// the part it allows.
		cidrs := spacedCIDRs(n)
		cfg.Tunnel.AcademyPrefixes = cidrs[:min(n, maxAcademyPrefixes)]
		cases = append(cases, benchCase{name: fmt.Sprintf("%dk set elements", n/1000), cfg: cfg, elems: n, prefixes: cidrs})
	}
	if *rules > 0 {
		cfg := load(*cfgPath)
		cfg.Firewall.Rules = manyRules(cfg, *rules)
		cases = append(cases, benchCase{name: fmt.Sprintf("%d rules", *rules), cfg: cfg, elems: len(cfg.Tunnel.AcademyPrefixes)})
	}
	if *zones > 0 {
		cfg := load(*cfgPath)
		cfg.Board = "" // VLANs: no board port per zone
		cfg.Zones = manyZones(cfg, *zones)
		cases = append(cases, benchCase{name: fmt.Sprintf("%d zones", len(cfg.Zones)), cfg: cfg, elems: len(cfg.Tunnel.AcademyPrefixes)})
	}
	work, err := os.MkdirTemp("", "firewall-bench-")
	if err != nil {
		fail(err.Error())
	}
	defer os.RemoveAll(work)
	for _, c := range cases {
		c.run(nft, work, *runs)
	}
}

// maxAcademyPrefixes is the max tag of config.Tunnel.AcademyPrefixes.
const maxAcademyPrefixes = 256

type benchCase struct {
	name  string
	cfg   *config.Config
	elems int // CIDRs expected in the academy set
	// prefixes, when set, replace the academy prefixes after validation:
	// sets larger than a config allows.
	prefixes []netip.Prefix
}

func (c benchCase) run(nft, work string, runs int) {
	if err := c.cfg.Validate(); err != nil {
		fail(fmt.Sprintf("%s: %v", c.name, err))
	}
	if c.prefixes != nil {
		c.cfg.Tunnel.AcademyPrefixes = c.prefixes
	}
	plan, err := firewall.Compile(c.cfg)
	if err != nil {
		fail(err.Error())
	}
	kernelRules := 0
	for _, ch := range plan.Chains {
		kernelRules += len(ch.Rules)
	}
	f := firewall.New(box.Deps{})
	ctx := context.Background()
	// The timed runs replace a table of the same size, as a reload does.
	if err := f.Apply(ctx, plan); err != nil {
		fail(err.Error())
	}
	var lib []time.Duration
	for range runs {
		start := time.Now()
		if err := f.Apply(ctx, plan); err != nil {
			fail(err.Error())
		}
		lib = append(lib, time.Since(start))
	}
	libCheck := check(c.elems)

	// The same atomic replacement in nft's language: one file, one
	// transaction.
	file := filepath.Join(work, "ruleset.nft")
	text := "add table inet " + firewall.TableName + "\ndelete table inet " + firewall.TableName + "\n" + plan.String()
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		fail(err.Error())
	}
	var cli []time.Duration
	for range runs {
		start := time.Now()
		if out, err := exec.Command(nft, "-f", file).CombinedOutput(); err != nil {
			fail(fmt.Sprintf("nft -f: %v: %s", err, out))
		}
		cli = append(cli, time.Since(start))
	}
	nftCheck := check(c.elems)
	fmt.Printf("%-22s %14s %14s %14s %14s library %s, nft %s; %d rules\n", c.name,
		ms(minOf(lib)), ms(median(lib)), ms(minOf(cli)), ms(median(cli)), libCheck, nftCheck, kernelRules)
}

// check counts the academy set's intervals in the kernel.
func check(want int) string {
	c, err := nftables.New()
	if err != nil {
		fail(err.Error())
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: firewall.TableName}
	els, err := c.GetSetElements(&nftables.Set{Table: t, Name: "academy", KeyType: nftables.TypeIPAddr, Interval: true})
	if err != nil {
		fail(err.Error())
	}
	n := 0
	for _, e := range els {
		if !e.IntervalEnd {
			n++
		}
	}
	if n != want {
		fail(fmt.Sprintf("the kernel holds %d intervals, want %d", n, want))
	}
	return fmt.Sprintf("%d/%d", n, want)
}

func load(path string) *config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		fail(err.Error())
	}
	return cfg
}

// spacedCIDRs returns n /30s that do not touch: n intervals in the kernel.
func spacedCIDRs(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	base := netip.MustParseAddr("100.64.0.0").As4()
	v := binary.BigEndian.Uint32(base[:])
	for i := range out {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v+uint32(i)*8)
		out[i] = netip.PrefixFrom(netip.AddrFrom4(b), 30)
	}
	return out
}

// manyRules spreads n rules over the zone pairs of cfg, one port each.
func manyRules(cfg *config.Config, n int) []config.Rule {
	var rules []config.Rule
	for i := range n {
		from, to := cfg.Zones[i%len(cfg.Zones)].Name, cfg.Zones[(i+1)%len(cfg.Zones)].Name
		p := uint16(10000 + i)
		rules = append(rules, config.Rule{
			Name: fmt.Sprintf("bench-%03d", i), From: from, To: to, Protocol: config.ProtoTCP,
			Ports: []config.PortRange{{First: p, Last: p}}, Action: config.ActionAccept,
		})
	}
	return rules
}

// manyZones adds pedagogical zones on VLAN interfaces (vlan1, ...) to the
// zones of cfg, up to n in all: the largest school the config allows.
func manyZones(cfg *config.Config, n int) []config.Zone {
	zones := slices.Clone(cfg.Zones)
	var peda config.Zone
	for _, z := range zones {
		if z.Kind == config.KindPedagogical {
			peda = z
		}
	}
	for i := 1; len(zones) < n; i++ {
		z := peda
		z.Name, z.Interfaces = fmt.Sprintf("vlan%d", i), []string{fmt.Sprintf("vlan%d", i)}
		z.Subnet = netip.MustParsePrefix(fmt.Sprintf("10.200.%d.0/24", i))
		z.Address = netip.MustParseAddr(fmt.Sprintf("10.200.%d.1", i))
		z.DHCP = config.DHCP{LeaseTime: peda.DHCP.LeaseTime} // no DHCP server: ranges would be the first zone's
		zones = append(zones, z)
	}
	return zones
}

func minOf(d []time.Duration) time.Duration { return slices.Min(d) }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "firewall-bench:", msg)
	os.Exit(1)
}
