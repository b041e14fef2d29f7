package firewall

import (
	"fmt"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestLoweredRulesReadBackAsTheirText lowers every rule of every example
// to netlink expressions and prints them back with the decompiler of
// `firewall show`: each must give the rule's own text. No kernel needed.
func TestLoweredRulesReadBackAsTheirText(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		t.Run(name, func(t *testing.T) {
			p := compileFile(t, path)
			c, err := nftables.New() // batches only: nothing is sent
			if err != nil {
				t.Fatal(err)
			}
			anon := map[string][]string{}
			l := &lowerer{conn: c, table: ourTable(), anonSet: func(s *nftables.Set, els []nftables.SetElement) {
				anon[fmt.Sprintf("anon-%d", s.ID)] = elementTexts(s, els)
			}}
			for _, ch := range p.Chains {
				for _, r := range ch.Rules {
					exprs, err := l.rule(r)
					if err != nil {
						t.Fatalf("chain %s: %s: %v", ch.Name, r, err)
					}
					for _, e := range exprs {
						if lk, ok := e.(*expr.Lookup); ok && lk.SetID != 0 {
							lk.SetName = fmt.Sprintf("anon-%d", lk.SetID)
						}
					}
					if got, want := decompile(exprs, anon), r.String(); got != want {
						t.Errorf("chain %s:\n got: %s\nwant: %s", ch.Name, got, want)
					}
				}
			}
		})
	}
}
