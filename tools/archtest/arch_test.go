// Package archtest keeps docs/architecture.md true: it reads the package
// table of that page (the "may import" column) and checks which Passerelle
// packages import which. A new package fails this test until the page
// gives it a row; there is no second copy of the rules to keep in step.
package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "passerelle/"

// rule is one row of the table: the project packages a package may
// import; any means every one but those in never.
type rule struct {
	allowed []string
	any     bool
	never   []string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readRules parses the table under "## Packages" of the architecture page.
// Each row is "| `pkg` | owns | may import |"; the last column lists
// packages in backticks, "—" for none, or "any" (optionally "any, except
// `a` and `b`").
func readRules(doc []byte) (map[string]rule, error) {
	rules := map[string]rule{}
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inTable = line == "## Packages"
			continue
		case !inTable || !strings.HasPrefix(line, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			return nil, fmt.Errorf("docs/architecture.md:%d: a package row needs three columns", n)
		}
		name := backticked.FindStringSubmatch(cells[0])
		if name == nil {
			continue // header and separator rows
		}
		last := strings.TrimSpace(cells[len(cells)-1])
		var r rule
		switch {
		case last == "—" || last == "-":
		case strings.HasPrefix(last, "any"):
			r.any = true
			for _, m := range backticked.FindAllStringSubmatch(last, -1) {
				r.never = append(r.never, m[1])
			}
		default:
			for _, m := range backticked.FindAllStringSubmatch(last, -1) {
				r.allowed = append(r.allowed, m[1])
			}
			if len(r.allowed) == 0 {
				return nil, fmt.Errorf("docs/architecture.md:%d: %s: cannot read the may-import column %q (backticked packages, — or any)", n, name[1], last)
			}
		}
		if _, dup := rules[name[1]]; dup {
			return nil, fmt.Errorf("docs/architecture.md:%d: %s has two rows", n, name[1])
		}
		rules[name[1]] = r
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("docs/architecture.md: no package table under \"## Packages\"")
	}
	return rules, sc.Err()
}

func goList(t *testing.T, root string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(goTool(), append([]string{"list"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func TestPackageDependencies(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := readRules(doc)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	out := goList(t, root, "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(f[0], module)
		seen[pkg] = true
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("package %s has no row in docs/architecture.md: say what it owns and what it may import", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			switch {
			case slices.Contains(r.never, dep):
				t.Errorf("%s must not import %s (docs/architecture.md)", pkg, dep)
			case r.any, slices.Contains(r.allowed, dep):
			default:
				t.Errorf("%s imports %s, which docs/architecture.md does not allow (allowed: %v)", pkg, dep, r.allowed)
			}
		}
	}
	for pkg := range rules {
		if !seen[pkg] {
			t.Errorf("docs/architecture.md has a row for %s, which does not exist", pkg)
		}
	}
}

// kernelLibraries are what the composer must never depend on, even
// indirectly: it is the contract every component is tested against
// without a kernel, and the NOC links it to review plans.
var kernelLibraries = []string{
	"github.com/vishvananda/", // netlink, netns
	"github.com/google/nftables",
	"github.com/mdlayher/",
	"github.com/ti-mo/", // conntrack
	"github.com/jsimonetti/rtnetlink",
}

func TestBoxImportsNoKernelLibrary(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(goList(t, root, "-deps", "./pkg/box"))) {
		for _, k := range kernelLibraries {
			if strings.HasPrefix(dep, k) {
				t.Errorf("pkg/box depends on %s: the composer must not reach the kernel", dep)
			}
		}
	}
}

func TestReadRules(t *testing.T) {
	doc := "## Packages\n\n| package | owns | may import |\n| --- | --- | --- |\n" +
		"| `a` | x | — |\n| `b` | y | `a`, `c` |\n| `cmd/x` | z | any, except `a` |\n\n## Other\n| `d` | w | — |\n"
	got, err := readRules([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]rule{"a": {}, "b": {allowed: []string{"a", "c"}}, "cmd/x": {any: true, never: []string{"a"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rules = %v, want %v", got, want)
	}
}

// goTool is the go command to build and list with: the one on PATH, else
// the toolchain's own.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(build.Default.GOROOT, "bin", "go")
}
