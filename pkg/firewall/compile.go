// Package firewall owns the box's nftables table. For now it holds the
// minimal gateway: masquerade out of every uplink. The zone firewall
// (issue 5) replaces the compiler; the table and its atomic replacement
// stay.
//
// The box owns exactly one table, inet passerelle, and replaces it in one
// transaction. It never flushes the whole ruleset: other tables (tailscaled's)
// must survive our reloads.
package firewall

import (
	"fmt"
	"strings"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// TableName is the box's own nftables table (family inet).
const TableName = "passerelle"

// Plan is the desired ruleset of the box's table.
type Plan struct {
	// Masquerade lists the interfaces whose outgoing traffic is
	// source-NATed to the interface address: the uplinks.
	Masquerade []string
}

var _ box.Plan = (*Plan)(nil)

// Compile plans the ruleset of a valid config.
func Compile(cfg *config.Config) (*Plan, error) {
	p := &Plan{}
	for _, u := range cfg.Uplinks {
		p.Masquerade = append(p.Masquerade, u.Interface)
	}
	return p, nil
}

// String renders the plan in nft's own syntax, as `nft list table` would
// print it, for golden tests and NOC review.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	b.WriteString("\tchain postrouting {\n")
	b.WriteString("\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	for _, ifc := range p.Masquerade {
		fmt.Fprintf(&b, "\t\toifname %q counter masquerade\n", ifc)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
