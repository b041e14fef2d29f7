package manage

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/config"
)

// LANProbe guards renumbered LANs: a zone whose subnet or address the new
// configuration changes, and which had clients before (neighbours of the
// box in the old subnet), must see a client in its new subnet within the
// window; otherwise its machines are stranded (static addresses, leases
// renewed only at T1) and the generation is rolled back. Zones left as
// they were are not checked.
func LANProbe() Probe {
	return Probe{
		Name: "lan",
		Before: func(old, cur *config.Config) any {
			had := map[string]bool{}
			for _, z := range changedZones(old, cur) {
				for _, o := range old.Zones {
					if o.Name == z.Name {
						had[z.Name] = len(neighbours(o.Device(), o.Subnet, false)) > 0
					}
				}
			}
			return had
		},
		Check: func(_ context.Context, cfg *config.Config, before any) error {
			had, _ := before.(map[string]bool)
			var bad []string
			for _, z := range cfg.Zones {
				if had[z.Name] && len(neighbours(z.Device(), z.Subnet, false)) == 0 {
					bad = append(bad, fmt.Sprintf("zone %s had clients and none is seen in its new subnet %s", z.Name, z.Subnet))
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s", strings.Join(bad, "; "))
			}
			return nil
		},
	}
}

// neighbours lists the box's IPv4 neighbours on dev inside subnet that
// answered (reachable, stale, delay, probe); fresh: reachable only.
func neighbours(dev string, subnet netip.Prefix, fresh bool) []netip.Addr {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil
	}
	ns, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range ns {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || !subnet.Contains(a.Unmap()) {
			continue
		}
		ok = n.State&(netlink.NUD_REACHABLE) != 0
		if !fresh {
			ok = ok || n.State&(netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0
		}
		if ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}
