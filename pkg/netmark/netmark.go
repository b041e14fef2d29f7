// Package netmark allocates the firewall marks, routing tables and policy
// rule priorities that the uplink manager, the firewall and the tunnel
// share. It is the single place these numbers are chosen, so the packages
// agree without importing each other.
//
// Tailscale's tailscaled uses fwmark bits 0xff0000, rule priorities 52xx
// and table 52; everything here stays clear of them.
package netmark

import "fmt"

// UplinkMask selects the bits of a packet or connection mark that name the
// uplink a flow uses.
const UplinkMask uint32 = 0x0000ff00

// MaxUplinks is how many uplinks have a mark (config allows 8).
const MaxUplinks = 8

// Uplink returns the mark of the uplink at index i of the config's
// uplinks: (i+1)<<8, so 0 means "no uplink chosen yet".
func Uplink(i int) uint32 {
	if i < 0 || i >= MaxUplinks {
		panic(fmt.Sprintf("netmark: uplink index %d out of range", i))
	}
	return uint32(i+1) << 8
}

// UplinkIndex is the inverse of Uplink: the uplink index a mark names, or
// -1 if none.
func UplinkIndex(mark uint32) int {
	v := int((mark & UplinkMask) >> 8)
	if v == 0 || v > MaxUplinks {
		return -1
	}
	return v - 1
}

// Routing tables.
const (
	// TableUplinkBase + i is the table of uplink i: its default route only.
	TableUplinkBase = 100
	// TableActive holds the default route of new, unmarked flows: the
	// active uplink, or a weighted multipath route over balanced ones.
	// Failover replaces this one route.
	TableActive = 200
)

// Policy rule priorities, lowest first.
const (
	// PrioMainSuppress: "lookup main suppress_prefixlength 0", so traffic to
	// the box's own networks (LAN zones, uplink subnets) uses the main
	// table before any uplink table.
	PrioMainSuppress = 1000
	// PrioUplinkBase + i: "fwmark Uplink(i)/UplinkMask lookup
	// TableUplinkBase+i", keeping established flows on their uplink.
	PrioUplinkBase = 1100
	// PrioActive: "lookup TableActive" for new flows. It comes after
	// tailscaled's rules (5210-5270, table 52) so traffic for the tailnet
	// and the academy's advertised routes takes the tunnel, not the
	// default uplink.
	PrioActive = 6000
	// PrioTunnelBypass: "fwmark TailscaleBypassMark/TailscaleMask lookup
	// <uplink table>", before tailscaled's own rules (5210 sends that mark
	// to the main table, where the box has no default route): tailscaled's
	// own traffic (control, DERP, WireGuard) leaves through an uplink.
	PrioTunnelBypass = 5000
)

// tailscaled's marks (tailscale.com/tsconst), listed so the box's numbers
// stay clear of them.
const (
	// TailscaleMask holds the bits of a mark that tailscaled uses.
	TailscaleMask uint32 = 0x00ff0000
	// TailscaleBypassMark is on every socket of tailscaled's own
	// (SO_MARK): its traffic must not enter the tunnel.
	TailscaleBypassMark uint32 = 0x00080000
)

// UplinkTable returns the routing table of uplink i.
func UplinkTable(i int) int { return TableUplinkBase + i }

// UplinkPriority returns the rule priority of uplink i's mark rule.
func UplinkPriority(i int) int { return PrioUplinkBase + i }
