package lab

import (
	"fmt"

	"passerelle/pkg/config"
)

// SpecFromConfig derives the lab for a box config: an ISP per static uplink
// whose gateway is the uplink's gateway, and a client per zone on the
// zone's first interface. The same config then runs in the lab and on a
// board, since the lab gives the box the interface names the config uses.
func SpecFromConfig(cfg *config.Config) (Spec, error) {
	var s Spec
	for _, u := range cfg.Uplinks {
		if u.Addressing != config.AddressingStatic {
			return Spec{}, fmt.Errorf("lab: uplink %s uses %s addressing; the lab's ISPs serve static uplinks only", u.Name, u.Addressing)
		}
		s.Uplinks = append(s.Uplinks, UplinkSpec{Name: u.Name, Interface: u.Interface, BoxAddr: u.Address, Gateway: u.Gateway})
	}
	for _, z := range cfg.Zones {
		s.Zones = append(s.Zones, ZoneSpec{Name: z.Name, Interface: z.Interfaces[0], Subnet: z.Subnet, Gateway: z.Address})
	}
	return s, nil
}
