package config

// Facts derived from the configuration that several components need. They
// live here, once, so the interfaces, the firewall, DHCP, DNS and time
// always agree on them.

// BridgeName names the bridge the box makes for a zone with several
// interfaces.
func BridgeName(zone string) string { return "br-" + zone }

// Device is the interface the zone's clients are on: its only interface,
// or the bridge joining several (BridgeName).
func (z *Zone) Device() string {
	if len(z.Interfaces) == 1 {
		return z.Interfaces[0]
	}
	return BridgeName(z.Name)
}

// ServesNTP says whether the box answers NTP in the zone. Guest zones are
// not served: their devices set their clocks from the internet, and the
// box shows unknown devices as little as it can.
func (c *Config) ServesNTP(z *Zone) bool {
	return c.Time.Serve && z.Kind != KindGuest
}

// Profile returns the DNS profile named name, or nil.
func (c *Config) Profile(name string) *Profile {
	for i := range c.DNS.Profiles {
		if c.DNS.Profiles[i].Name == name {
			return &c.DNS.Profiles[i]
		}
	}
	return nil
}

// MinorsZone says whether the zone's DNS profile protects minors: the
// bypass defences of the DNS filter and the firewall apply there.
func (c *Config) MinorsZone(z *Zone) bool {
	if z == nil || z.DNSProfile == "" {
		return false
	}
	p := c.Profile(z.DNSProfile)
	return p != nil && p.Minors
}

// AnyMinorsZone says whether some zone protects minors.
func (c *Config) AnyMinorsZone() bool {
	for i := range c.Zones {
		if c.MinorsZone(&c.Zones[i]) {
			return true
		}
	}
	return false
}
