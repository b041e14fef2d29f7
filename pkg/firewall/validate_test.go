package firewall

import (
	"net/netip"
	"strings"
	"testing"
)

// TestValidateCatchesBrokenPlans: each plan would make the kernel refuse
// the batch (or load something else than meant); Validate says why first.
func TestValidateCatchesBrokenPlans(t *testing.T) {
	good := func() *Plan {
		return &Plan{
			Counters: []string{"c"},
			Sets: []Set{
				{Name: "ifs", Kind: SetIfnames, Ifnames: []string{"wan0"}},
				{Name: "nets", Kind: SetIPv4Ranges, Ranges: []Range{{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.255")}}},
			},
			Chains: []Chain{
				{Name: "forward", Base: &BaseChain{Type: "filter", Hook: "forward", Drop: true}, Rules: []Rule{
					{Exprs: []Expr{IfSet{Set: "ifs"}, Verdict{Kind: Jump, Chain: "sub"}}},
				}},
				{Name: "sub", Rules: []Rule{{Exprs: []Expr{AddrSet{Set: "nets"}, Counter{Name: "c"}, Verdict{Kind: Accept}}}}},
			},
		}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid plan refused: %v", err)
	}
	tests := []struct {
		name   string
		break_ func(p *Plan)
		want   string
	}{
		{"undeclared counter", func(p *Plan) { p.Counters = nil }, `counter "c" is not declared`},
		{"jump to nowhere", func(p *Plan) { p.Chains = p.Chains[:1] }, `no regular chain "sub"`},
		{"jump to a base chain", func(p *Plan) {
			p.Chains[0].Rules[0].Exprs[1] = Verdict{Kind: Jump, Chain: "forward"}
		}, `no regular chain "forward"`},
		{"missing set", func(p *Plan) { p.Sets = p.Sets[1:] }, `no interface set "ifs"`},
		{"set of the wrong type", func(p *Plan) {
			p.Chains[1].Rules[0].Exprs[0] = AddrSet{Set: "ifs"}
		}, `no address set "ifs"`},
		{"overlapping ranges", func(p *Plan) {
			p.Sets[1].Ranges = append(p.Sets[1].Ranges, Range{netip.MustParseAddr("10.0.0.128"), netip.MustParseAddr("10.0.1.0")})
		}, "overlap or touch"},
		{"verdict not last", func(p *Plan) {
			p.Chains[1].Rules[0].Exprs = []Expr{Verdict{Kind: Accept}, Counter{Name: "c"}}
		}, "is not last"},
		{"tcp reset without tcp", func(p *Plan) {
			p.Chains[1].Rules[0].Exprs[2] = Verdict{Kind: Reset}
		}, "tcp reset needs a tcp match"},
		{"bad name", func(p *Plan) { p.Chains[1].Name = "sub chain" }, `character ' ' not allowed`},
		{"duplicate chain", func(p *Plan) { p.Chains = append(p.Chains, p.Chains[1]) }, `chain "sub" declared twice`},
		{"nat chain with drop policy", func(p *Plan) {
			p.Chains = append(p.Chains, Chain{Name: "nat", Base: &BaseChain{Type: "nat", Hook: "prerouting", Drop: true}})
		}, "policy accept"},
		{"IPv6 in an IPv4 set", func(p *Plan) {
			p.Sets = append(p.Sets, Set{Name: "b", Kind: SetIPv4Addrs, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}})
		}, "does not belong"},
		{"port 0", func(p *Plan) {
			p.Chains[1].Rules[0].Exprs[0] = Ports{Proto: "tcp", Ranges: []PortRange{{0, 10}}}
		}, "bad port range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.break_(p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCompiledExamplesAreValid: Compile's output always passes Validate.
func TestCompiledExamplesAreValid(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		p, err := Compile(loadConfig(t, path))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
