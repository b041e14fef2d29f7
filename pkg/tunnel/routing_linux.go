package tunnel

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"passerelle/pkg/netmark"
)

// bypassRule is the rule that sends tailscaled's own traffic to an uplink
// table (see the package comment).
func bypassRule(table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Priority = netmark.PrioTunnelBypass
	r.Mark = netmark.TailscaleBypassMark
	mask := netmark.TailscaleMask
	r.Mask = &mask
	r.Table = table
	return r
}

// setBypass makes table the one rule at PrioTunnelBypass (0: none). The new
// rule is added before the old one is removed, so tailscaled's traffic is
// never left without a route.
func setBypass(table int) error {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list ip rules: %w", err)
	}
	have := false
	var stale []netlink.Rule
	for _, r := range rules {
		if r.Priority != netmark.PrioTunnelBypass {
			continue
		}
		if r.Table == table && table != 0 && !have {
			have = true
			continue
		}
		stale = append(stale, r)
	}
	if table != 0 && !have {
		if err := netlink.RuleAdd(bypassRule(table)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("ip rule for tailscaled's traffic (table %d): %w", table, err)
		}
	}
	var errs []error
	for _, r := range stale {
		if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove ip rule for tailscaled's traffic (table %d): %w", r.Table, err))
		}
	}
	return errors.Join(errs...)
}
