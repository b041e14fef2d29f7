package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/boot"
	"passerelle/pkg/box"
	"passerelle/pkg/dhcpd"
	"passerelle/pkg/dnsfilter"
	"passerelle/pkg/firewall"
	"passerelle/pkg/health"
	"passerelle/pkg/netif"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/telemetry"
	"passerelle/pkg/timesync"
	"passerelle/pkg/tunnel"
	"passerelle/pkg/uplink"
)

// composition is everything the firmware is made of, built once, before
// any configuration is read: the shared registries first (warnings,
// metrics, the supervisor), then the components, which may be handed any
// of them (the tunnel is given the supervisor to run tailscaled; the
// metrics push is given the Gatherer).
type composition struct {
	health  *health.Registry
	metrics *prometheus.Registry // also the Gatherer of /metrics and the push
	sup     *supervisor.Supervisor
	box     *box.Box
	// components are the box's parts in apply order (tests compose
	// their own box from them).
	components []box.Component

	// Components the daemon, or other components, talk to directly.
	system  *boot.System
	uplinks *uplink.Manager
	fw      *firewall.Firewall
}

// composeOptions are the daemon's choices that shape the components.
// The zero value composes a box that changes nothing outside its own
// components (what `passerelle plan` needs).
type composeOptions struct {
	pid1     bool               // the system component acts only as init
	boot     boot.Options       // /perm and step timeouts, for the system component
	leaseDir string             // DHCP lease files; default dhcpd.DefaultLeaseDir
	clock    timesync.Clock     // nil: the box never sets the clock
	policy   supervisor.Policy  // zero: supervisor.DefaultPolicy
	tracker  supervisor.Tracker // the PID 1 reaper, or nil
	now      func() time.Time   // nil: time.Now
	health   *health.Registry   // nil: a new one (the init passes the boot's)
	tunnel   string             // tailscaled's run directory; default tunnel.DefaultRunDir
}

// compose builds the firmware's parts, in apply order: system (host name,
// modules, sysctls) → interfaces → uplinks (default routing needs the
// interfaces and their addresses) → firewall → tunnel (tailscale0 is the
// firewall's tunnel zone; DNS forwards the academy's domains through it) →
// dns → dhcp → time.
func compose(log *slog.Logger, o composeOptions) (*composition, error) {
	c := &composition{health: o.health, metrics: prometheus.NewRegistry()}
	if c.health == nil {
		c.health = health.New(o.now)
	}
	if err := c.metrics.Register(c.health.Collector()); err != nil {
		return nil, fmt.Errorf("health metrics: %w", err)
	}
	deps := box.Deps{Log: log, Metrics: c.metrics, Health: c.health, Now: o.now}
	sup, err := supervisor.New(deps, supervisor.Options{Policy: o.policy, Tracker: o.tracker})
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	c.sup = sup

	c.system = boot.NewSystem(deps, o.boot, o.pid1)
	c.uplinks = uplink.New(deps, uplink.Options{})
	c.fw = firewall.New(deps)
	// The tunnel runs tailscaled under the supervisor; its own traffic
	// prefers Renater while the uplink manager says it is usable.
	tun := tunnel.New(deps, tunnel.Options{Supervisor: c.sup, Uplinks: c.uplinks, RunDir: o.tunnel})
	dhcp := dhcpd.New(deps, dhcpd.Options{LeaseDir: o.leaseDir})
	// The DNS filter hands the firewall the DoH addresses to drop, answers
	// the DHCP clients' names from the live leases, and the box's own
	// lookups on 127.0.0.1 (the /etc/resolv.conf pkg/boot writes).
	dns := dnsfilter.New(deps, dnsfilter.Options{Blocker: c.fw, Leases: leaseNames{dhcp}, Own: netip.AddrFrom4([4]byte{127, 0, 0, 1})})
	// The metrics push reads the whole registry and pins its connections
	// to the preferred uplink.
	tele, err := telemetry.New(deps, telemetry.Options{Gatherer: c.metrics, Uplinks: c.uplinks})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	c.components = []box.Component{
		c.system,
		netif.New(deps),
		c.uplinks,
		c.fw,
		tun,
		dns,
		dhcp,
		timesync.New(deps, timesync.Options{Clock: o.clock}),
		tele,
	}
	c.box = box.New(log, c.components...)
	return c, nil
}

// leaseNames shows the DHCP server's leases to the DNS filter in the
// filter's terms (neither package imports the other).
type leaseNames struct{ s *dhcpd.Server }

func (l leaseNames) LeasesVersion() uint64 { return l.s.LeasesVersion() }

func (l leaseNames) NamedLeases() []dnsfilter.Lease {
	in := l.s.NamedLeases()
	out := make([]dnsfilter.Lease, len(in))
	for i, x := range in {
		out[i] = dnsfilter.Lease{Zone: x.Zone, Addr: x.Addr, Client: x.MAC.String(), Hostname: x.Hostname}
	}
	return out
}
