package config

import (
	"bufio"
	"bytes"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kernelLibraries are the import path prefixes pkg/config must not depend
// on: the NOC validates configs on machines that are not routers, and the
// package is plain data. (yaml.v3 needs no golang.org/x/sys; the standard
// library's vendored copy, vendor/golang.org/x/sys/..., is not matched.)
var kernelLibraries = []string{
	"github.com/vishvananda/", // netlink, netns
	"github.com/google/nftables",
	"github.com/mdlayher/", // netlink, socket
	"github.com/jsimonetti/rtnetlink",
	"golang.org/x/sys/unix",
}

const configImportPath = "passerelle/pkg/config"

func TestNoKernelLibraries(t *testing.T) {
	tool := goTool()
	if _, err := os.Stat(tool); err != nil {
		t.Skip("no go command to list dependencies with")
	}
	cmd := exec.Command(tool, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, configImportPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", configImportPath, err, stderr.String())
	}
	imports := parseImports(out)
	if _, ok := imports[configImportPath]; !ok {
		t.Fatalf("go list output does not mention %s:\n%s", configImportPath, out)
	}
	for _, p := range forbiddenDeps(imports, configImportPath) {
		t.Error(p)
	}
}

// parseImports reads lines "pkg import1 import2..." into a graph.
func parseImports(out []byte) map[string][]string {
	g := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	return g
}

// forbiddenDeps lists every kernel library reachable from root, each with
// the shortest import chain that pulls it in.
func forbiddenDeps(imports map[string][]string, root string) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	var problems []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if isKernelLibrary(p) {
			var chain []string
			for q := p; q != ""; q = parent[q] {
				chain = append([]string{q}, chain...)
			}
			problems = append(problems, "pkg/config must stay free of kernel libraries: imports "+p+" via "+strings.Join(chain, " -> "))
			continue
		}
		for _, imp := range imports[p] {
			if _, seen := parent[imp]; !seen {
				parent[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return problems
}

func isKernelLibrary(path string) bool {
	for _, prefix := range kernelLibraries {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

func TestForbiddenDepsNamesTheChain(t *testing.T) {
	g := parseImports([]byte(`passerelle/pkg/config fmt passerelle/board
fmt os
passerelle/board gopkg.in/yaml.v3 passerelle/pkg/netutil
passerelle/pkg/netutil github.com/vishvananda/netlink vendor/golang.org/x/sys/cpu
github.com/vishvananda/netlink github.com/vishvananda/netns golang.org/x/sys/unix
`))
	got := forbiddenDeps(g, configImportPath)
	want := []string{
		"pkg/config must stay free of kernel libraries: imports github.com/vishvananda/netlink via passerelle/pkg/config -> passerelle/board -> passerelle/pkg/netutil -> github.com/vishvananda/netlink",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
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
