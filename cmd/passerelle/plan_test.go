package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updatePlans = flag.Bool("update-plans", false, "rewrite testdata/plans/*.golden")

// firewallGoldens holds the firewall's golden tables, owned by
// pkg/firewall (TestCompileGolden there; rewritten with its -update).
const firewallGoldens = "../../pkg/firewall/testdata/golden"

// sectionHeader starts a component's section in `passerelle plan`: "# NAME".
var sectionHeader = regexp.MustCompile(`(?m)^# ([a-z]+)\n`)

// firewallRef is what a plan golden holds in place of the firewall's
// section: the file that has the text.
func firewallRef(name string) string {
	return "(the table of pkg/firewall/testdata/golden/" + name + ".nft, checked against it)\n"
}

// splitFirewall returns the plan with the firewall section's body replaced
// by firewallRef, and that body.
func splitFirewall(t *testing.T, plan, name string) (rest, firewall string) {
	t.Helper()
	heads := sectionHeader.FindAllStringSubmatchIndex(plan, -1)
	for i, h := range heads {
		if plan[h[2]:h[3]] != "firewall" {
			continue
		}
		end := len(plan)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		return plan[:h[1]] + firewallRef(name) + plan[end:], plan[h[1]:end]
	}
	t.Fatalf("the plan has no firewall section:\n%s", plan)
	return "", ""
}

// TestPlanGolden pins what every example config makes the box set up
// (interfaces, routes, nftables text, DNS, DHCP, time): a change to a
// compiler shows up as a reviewable diff of golden files.
//
// Each golden text is stored once. The firewall's section of a plan is
// the table pkg/firewall compiles, which pkg/firewall pins in its own
// golden files: this test checks the section against that file, and
// testdata/plans/NAME.golden holds every other section plus one line
// naming it. -update-plans rewrites the plan goldens only; a firewall
// change is reviewed (and -update'd) in pkg/firewall.
func TestPlanGolden(t *testing.T) {
	files, _ := filepath.Glob("../../configs/examples/*.yaml")
	files = append(files, "../../configs/demo.yaml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"plan", f}, &stdout, &stderr); code != 0 {
				t.Fatalf("plan %s: exit %d: %s", f, code, stderr.String())
			}
			got, fw := splitFirewall(t, stdout.String(), name)

			nft := filepath.Join(firewallGoldens, name+".nft")
			wantFW, err := os.ReadFile(nft)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/firewall -run TestCompileGolden -update)", err)
			}
			if fw != string(wantFW) {
				t.Errorf("firewall section of the plan of %s differs from %s (the table pkg/firewall compiles; see its TestCompileGolden):\n--- got\n%s--- want\n%s", f, nft, fw, wantFW)
			}

			golden := filepath.Join("testdata", "plans", name+".golden")
			if *updatePlans {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/passerelle -run TestPlanGolden -update-plans)", err)
			}
			if got != string(want) {
				t.Errorf("plan of %s differs from %s:\n--- got\n%s--- want\n%s", f, golden, got, want)
			}
		})
	}
}
