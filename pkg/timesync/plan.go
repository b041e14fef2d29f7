// Package timesync keeps the box's clock: it measures the clock against
// the configured NTP servers (Renater's by default) through the box's
// routing, so through the active uplink, exports offset and sync state as
// metrics and health warnings, steers the system clock only when it is
// allowed to (see Options.Clock), and answers NTP queries from the LAN
// zones on the box's zone addresses.
//
// The NTP packet handling is small and written here with strict
// validation (packet.go, query.go, serve.go); planning is pure (plan.go);
// the sockets and the system clock are in _linux.go files.
package timesync

import (
	"fmt"
	"net/netip"
	"strings"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// Port is the NTP port.
const Port = 123

// Plan is what the time service does for one config.
type Plan struct {
	Servers []string // host names or addresses, in config order
	Listen  []Listener
}

// Listener is one zone address the NTP service answers on.
type Listener struct {
	Zone string
	Addr netip.Addr
}

var _ box.Plan = (*Plan)(nil)

func compile(cfg *config.Config) (*Plan, error) {
	p := &Plan{Servers: append([]string(nil), cfg.Time.Servers...)}
	if len(p.Servers) == 0 {
		return nil, fmt.Errorf("no NTP server configured")
	}
	if cfg.Time.Serve {
		for _, z := range cfg.Zones {
			if cfg.ServesNTP(&z) {
				p.Listen = append(p.Listen, Listener{Zone: z.Name, Addr: z.Address})
			}
		}
	}
	return p, nil
}

func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sync from %s\n", strings.Join(p.Servers, ", "))
	for _, l := range p.Listen {
		fmt.Fprintf(&b, "serve ntp on %s (zone %s)\n", netip.AddrPortFrom(l.Addr, Port), l.Zone)
	}
	if len(p.Listen) == 0 {
		b.WriteString("ntp service for the zones off\n")
	}
	return b.String()
}
