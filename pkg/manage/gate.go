package manage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// HealthProbe fails while a critical warning is raised that was not
// raised before the apply.
func HealthProbe(h *health.Registry) Probe {
	return Probe{
		Name: "health",
		Before: func(_, _ *config.Config) any {
			var codes []string
			for _, w := range h.List() {
				if w.Severity == health.Critical {
					codes = append(codes, w.Code)
				}
			}
			return codes
		},
		Check: func(_ context.Context, _ *config.Config, before any) error {
			old, _ := before.([]string)
			var bad []string
			for _, w := range h.List() {
				if w.Severity == health.Critical && !slices.Contains(old, w.Code) {
					bad = append(bad, w.Code+" ("+w.Message+")")
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("new critical warning %s", strings.Join(bad, ", "))
			}
			return nil
		},
	}
}

// DNSProbe asks the box's DNS server on every zone address for
// localhost., a name that never leaves the box: it passes when every
// zone answers.
func DNSProbe() Probe {
	return Probe{
		Name: "dns",
		Check: func(ctx context.Context, cfg *config.Config, _ any) error {
			c := &dns.Client{Net: "udp"}
			for _, z := range cfg.Zones {
				if !z.Address.IsValid() {
					continue
				}
				q := new(dns.Msg)
				q.SetQuestion("localhost.", dns.TypeA)
				r, _, err := c.ExchangeContext(ctx, q, netip.AddrPortFrom(z.Address, 53).String())
				if err != nil {
					return fmt.Errorf("zone %s (%s): %v", z.Name, z.Address, err)
				}
				if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
					return fmt.Errorf("zone %s (%s): %s", z.Name, z.Address, dns.RcodeToString[r.Rcode])
				}
			}
			return nil
		},
	}
}

// NOCProbe passes when the pull URL answers over HTTP (any status: the
// NOC's server is reachable), through the same pinned path as the polls.
// Without a pull URL it passes.
func (m *Manager) NOCProbe() Probe {
	return Probe{
		Name: "noc",
		Check: func(ctx context.Context, cfg *config.Config, _ any) error {
			if cfg.Management.PullURL == "" {
				return nil
			}
			c, err := m.client(cfg)
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, PullURL(cfg), nil)
			if err != nil {
				return err
			}
			resp, err := c.Do(req)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return fmt.Errorf("%s does not answer", req.URL.Host)
				}
				return err
			}
			resp.Body.Close()
			return nil
		},
	}
}

// changedZones are the zones of cur whose subnet or address differs in
// old (renumbered LANs), with their device.
func changedZones(old, cur *config.Config) []config.Zone {
	if old == nil {
		return nil
	}
	var out []config.Zone
	for _, z := range cur.Zones {
		for _, o := range old.Zones {
			if o.Name == z.Name && (o.Subnet != z.Subnet || o.Address != z.Address) {
				out = append(out, z)
			}
		}
	}
	return out
}
