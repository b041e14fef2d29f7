package firewall

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// replaceTable swaps in the plan's table in one netlink batch: add (so the
// delete cannot fail on a first run), delete, add, fill. The kernel applies
// the batch all or nothing, so traffic never sees a half-built table.
func replaceTable(p *Plan) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	post := c.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	for _, ifc := range p.Masquerade {
		c.AddRule(&nftables.Rule{
			Table: t,
			Chain: post,
			Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(ifc)},
				&expr.Counter{},
				&expr.Masq{},
			},
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace table inet %s: %w", TableName, err)
	}
	return nil
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}
