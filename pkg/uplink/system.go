package uplink

import (
	"context"
	"net/netip"
	"time"
)

// system is the kernel side of the manager: routing, addresses, conntrack,
// link events and probe sockets. The Linux implementation is in
// system_linux.go; tests use a fake that records what it is asked.
type system interface {
	// syncRouting makes the policy rules and the per-uplink tables match
	// the plan; gws holds each link's gateway by index (a link without a
	// gateway gets an empty table). Rules and tables of uplink indexes the
	// plan does not use are removed.
	syncRouting(p *Plan, gws map[int]netip.Addr) error
	// setActive replaces TableActive's default route with one netlink
	// message: the selected uplinks' gateways, weighted when several.
	setActive(p *Plan, sel selection, gws map[int]netip.Addr) error
	// flushConntrack deletes the connections tied to an uplink's mark
	// (filtered in the kernel), and those without an uplink mark that
	// were NATed to addr (if valid), so their next packet starts a new
	// connection on another uplink. It returns how many were deleted.
	flushConntrack(mark uint32, addr netip.Addr) (int, error)
	// setAddress puts a DHCP address on an interface, replacing old
	// (which is removed if different); an invalid want removes old only.
	// valid bounds the address's lifetime (0: forever), so that a lease
	// the daemon could not renew does not outlive it.
	setAddress(ifname string, old, want netip.Prefix, valid time.Duration) error
	// watchCarrier reports the carrier of the interfaces names returns,
	// with their index (0: the interface does not exist), first as it is
	// then as it changes, until ctx ends; repeated reports of an
	// unchanged state are allowed. A new index is a new device (a modem
	// plugged in again).
	watchCarrier(ctx context.Context, names func() []string, report func(ifname string, up bool, index int))
	// linkStats returns an interface's byte counters.
	linkStats(ifname string) (rx, tx uint64, ok bool)
	// rxPackets returns the packets an interface received: evidence that
	// a link whose probes fail still carries traffic.
	rxPackets(ifname string) (uint64, bool)
	// resolveGateway starts the resolution of gw's link-layer address on
	// ifname at once (a link whose carrier just came back).
	resolveGateway(ifname string, gw netip.Addr) error
	// checkDNS asks server a query through the link (its interface and
	// mark); nil when any answer comes back before ctx ends.
	checkDNS(ctx context.Context, l Link, server netip.AddrPort) error
	// newProber opens the probe sockets of a link.
	newProber(l Link) (prober, error)
}

// prober sends one kind of probe through one uplink.
type prober interface {
	// probe sends one probe to target and returns its round-trip time,
	// or an error when ctx ends first or the probe cannot be sent.
	probe(ctx context.Context, target netip.Addr) (time.Duration, error)
	close() error
}
