// Package archtest keeps docs/architecture.md true: it checks which
// Passerelle packages import which. A new package fails this test until it
// is given a row here and in the document.
package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "passerelle/"

// allowed maps each package to the project packages it may import (not
// counting tests). "*" allows any project package except those listed in
// never.
var allowed = map[string][]string{
	"board":                           {},
	"pkg/version":                     {},
	"pkg/config":                      {"board"},
	"pkg/box":                         {"pkg/config"},
	"pkg/netif":                       {"pkg/box", "pkg/config", "pkg/health"},
	"pkg/health":                      {},
	"pkg/netmark":                     {},
	"pkg/atomicfile":                  {},
	"pkg/boot":                        {"pkg/health"},
	"pkg/supervisor":                  {"pkg/health"},
	"pkg/watchdog":                    {},
	"pkg/power":                       {},
	"pkg/firewall":                    {"pkg/box", "pkg/config", "pkg/netmark"},
	"pkg/inventory":                   {"pkg/atomicfile", "pkg/config"},
	"pkg/inventory/inventorytest":     {},
	"pkg/lab":                         {"pkg/atomicfile", "pkg/config"},
	"pkg/uplink":                      {"pkg/box", "pkg/config", "pkg/dhcpclient", "pkg/health", "pkg/netmark"},
	"pkg/dhcpclient":                  {"pkg/atomicfile"},
	"tools/bench/failover":            {"pkg/config", "pkg/lab"},
	"pkg/dhcpd":                       {"pkg/atomicfile", "pkg/box", "pkg/config", "pkg/health"},
	"pkg/timesync":                    {"pkg/box", "pkg/config", "pkg/health"},
	"pkg/domainset":                   {},
	"pkg/ut1":                         {"pkg/atomicfile", "pkg/domainset"},
	"pkg/resolver":                    {},
	"pkg/dnsfilter":                   {"pkg/box", "pkg/config", "pkg/domainset", "pkg/health", "pkg/netmark", "pkg/resolver", "pkg/ut1"},
	"tools/bench/dns/benchdns":        {"pkg/config", "pkg/dnsfilter", "pkg/domainset", "pkg/ut1"},
	"cmd/passerelle":                  {"*"},
	"cmd/passerellectl":               {"*"},
	"tools/bench/firewall":            {"pkg/config", "pkg/firewall"},
	"tools/bench/render/geninventory": {"pkg/inventory/inventorytest"},
	"tools/archtest":                  {},
	"pkg/netnstest":                   {},
	"integration":                     {},
}

// never lists packages a "*" package still may not import: the firmware
// does not ship the lab or the NOC's inventory renderer.
var never = map[string][]string{
	"cmd/passerelle": {"pkg/lab", "pkg/inventory", "pkg/inventory/inventorytest"},
}

func TestPackageDependencies(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(f[0], module)
		rule, ok := allowed[pkg]
		if !ok {
			t.Errorf("package %s has no dependency rule: describe it in docs/architecture.md and add it to tools/archtest", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			switch {
			case slices.Contains(never[pkg], dep):
				t.Errorf("%s must not import %s", pkg, dep)
			case slices.Contains(rule, "*"), slices.Contains(rule, dep):
			default:
				t.Errorf("%s imports %s, which docs/architecture.md does not allow (allowed: %v)", pkg, dep, rule)
			}
		}
	}
}
