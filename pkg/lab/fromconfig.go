package lab

import (
	"fmt"

	"passerelle/pkg/config"
)

// SpecFromConfig derives the lab for a box config: an ISP per uplink whose
// gateway is the uplink's gateway (a DHCP uplink's ISP serves an address
// of 100.64.n.0/24 by DHCP), and a client per zone on the zone's first
// interface. The same config then runs in the lab and on a board, since
// the lab gives the box the interface names the config uses.
func SpecFromConfig(cfg *config.Config) (Spec, error) {
	var s Spec
	for n, u := range cfg.Uplinks {
		switch u.Addressing {
		case config.AddressingStatic:
			s.Uplinks = append(s.Uplinks, UplinkSpec{Name: u.Name, Interface: u.Interface, BoxAddr: u.Address, Gateway: u.Gateway})
		case config.AddressingDHCP:
			s.Uplinks = append(s.Uplinks, dhcpUplinkSpec(n, u.Name, u.Interface))
		default:
			return Spec{}, fmt.Errorf("lab: uplink %s uses %s addressing, which the lab's ISPs do not serve", u.Name, u.Addressing)
		}
	}
	for _, z := range cfg.Zones {
		s.Zones = append(s.Zones, ZoneSpec{Name: z.Name, Interface: z.Interfaces[0], Subnet: z.Subnet, Gateway: z.Address})
	}
	return s, nil
}
