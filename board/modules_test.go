package board

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// exprModules maps each google/nftables expression type to the kernel
// module that implements it on Linux 6.1 (the Debian kernel of the arm64
// boards). Empty means built into nf_tables itself (nf_tables-objs in
// net/netfilter/Makefile). A type missing here fails the test: whoever
// teaches the firewall a new expression says which module it needs, and
// the boards get it.
var exprModules = map[string][]string{
	"Bitwise": nil, "Byteorder": nil, "Cmp": nil, "Counter": nil, "Dynset": nil,
	"Exthdr": nil, "Immediate": nil, "Lookup": nil, "Meta": nil, "Payload": nil,
	"Range": nil, "Rt": nil, "Verdict": nil,
	"Ct":        {"nft_ct", "nf_conntrack"},
	"Fib":       {"nft_fib_inet", "nft_fib_ipv4", "nft_fib_ipv6"},
	"Limit":     {"nft_limit"},
	"Masq":      {"nft_masq"},
	"NAT":       {"nft_nat"},
	"Numgen":    {"nft_numgen"},
	"Objref":    {"nft_objref"},
	"Redir":     {"nft_redir"},
	"Reject":    {"nft_reject_inet"},
	"Quota":     {"nft_quota"},
	"Connlimit": {"nft_connlimit"},
	"Log":       {"nft_log"},
	"Hash":      {"nft_hash"},
}

// alwaysModules are needed whatever the rules: the nftables core, NAT
// chains, the uplink manager's conntrack flush (ctnetlink) and the
// tunnel's TUN device.
var alwaysModules = []string{"nf_tables", "nft_chain_nat", "nf_conntrack_netlink", "tun"}

// firewallExprs lists the expression types pkg/firewall builds
// (composite literals expr.T{...} in its non-test sources).
func firewallExprs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../pkg/firewall/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("pkg/firewall sources: %v (%d files)", err, len(files))
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := cl.Type.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "expr" && sel.Sel.Name != "Any" {
					seen[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	var out []string
	for e := range seen {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// TestBoardsHaveTheFirewallModules fails when the firewall emits an
// expression whose module a real board does not load: on Debian's kernel
// nf_tables then refuses the whole table (issue 18: nft_objref was
// missing and every rule set failed with "invalid argument").
func TestBoardsHaveTheFirewallModules(t *testing.T) {
	exprs := firewallExprs(t)
	if len(exprs) < 5 {
		t.Fatalf("found only %v in pkg/firewall: the scan is broken", exprs)
	}
	need := append([]string(nil), alwaysModules...)
	for _, e := range exprs {
		mods, ok := exprModules[e]
		if !ok {
			t.Errorf("pkg/firewall emits expr.%s: add its kernel module to exprModules and to every board", e)
		}
		need = append(need, mods...)
	}
	for _, name := range Names() {
		if name == "lab" {
			continue // the namespace lab shares the host's kernel
		}
		b, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, m := range b.AllModules() {
			have[m] = true
		}
		for _, m := range need {
			if !have[m] {
				t.Errorf("board %s does not load %s (firewall expressions %v)", name, m, exprs)
			}
		}
	}
}

func TestInterfaceMatchesAreGlobs(t *testing.T) {
	for _, name := range Names() {
		b, _ := Lookup(name)
		for _, i := range b.Interfaces {
			for _, pat := range []string{i.Device, i.MAC} {
				if pat == "" {
					continue
				}
				if _, err := filepath.Match(pat, ""); err != nil {
					t.Errorf("board %s: interface %s: bad pattern %q: %v", name, i.Name, pat, err)
				}
			}
		}
	}
}
