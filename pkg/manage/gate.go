package manage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// GateOptions shape one run of the health gate.
type GateOptions struct {
	Probes []Probe
	Window time.Duration // the gate must pass before it ends
	Hold   time.Duration // how long every probe must pass without a break
	Every  time.Duration // time between rounds; 0: 500 ms
	Now    func() time.Time
	Log    *slog.Logger
	// Undecided, if set, is asked before every round: false means
	// someone else decided (a technician confirmed or rolled back), and
	// RunGate returns ErrDecided.
	Undecided func() bool
}

// ErrDecided: the gate stopped because the decision was made elsewhere.
var ErrDecided = errors.New("health gate: decided elsewhere")

// RunGate runs the probes until they all pass for the hold time (it
// returns "") or the window ends (it returns why the gate did not pass:
// "probe: reason; ..."). It returns an error only when ctx ends first or
// Undecided says the decision was made elsewhere: nothing was decided. befores are the probes' Before results (nil ones
// are fine). The configuration push (Manager) and a system slot on trial
// (cmd/passerelle, pkg/slots) both decide with it.
func RunGate(ctx context.Context, o GateOptions, cfg *config.Config, befores []any) (string, error) {
	if o.Every == 0 {
		o.Every = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(befores) < len(o.Probes) {
		befores = append(befores, make([]any, len(o.Probes)-len(befores))...)
	}
	start := o.Now()
	deadline := start.Add(o.Window)
	var passSince time.Time
	why := neverRan
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
		if o.Undecided != nil && !o.Undecided() {
			return "", ErrDecided
		}
		// The probes run together, and never past the deadline: a probe
		// that hangs (a dead link) must not stretch the window.
		round := min(2*time.Second, max(o.Every*4, 200*time.Millisecond))
		end, cut := o.Now().Add(round), false
		if end.After(deadline) {
			end, cut = deadline.Add(time.Millisecond), true
		}
		rctx, cancel := context.WithDeadline(ctx, end)
		errs := make([]error, len(o.Probes))
		var wg sync.WaitGroup
		for i, pr := range o.Probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = pr.Check(rctx, cfg, befores[i])
			}()
		}
		wg.Wait()
		cancel()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		now := o.Now()
		var fails, stopped []string
		for i, err := range errs {
			switch {
			case err == nil:
			case cut && rctx.Err() != nil && isTimeout(err):
				// Stopped by the window's end, not failed: the last
				// full round says why the gate did not pass.
				stopped = append(stopped, o.Probes[i].Name)
			default:
				fails = append(fails, o.Probes[i].Name+": "+err.Error())
			}
		}
		switch {
		case len(fails) == 0 && len(stopped) == 0:
			if passSince.IsZero() {
				passSince = now
			}
			if now.Sub(passSince) >= o.Hold {
				return "", nil
			}
		case len(fails) > 0:
			passSince = time.Time{}
			why = strings.Join(fails, "; ")
			o.Log.Debug("health gate not passing yet", "why", why)
		default:
			if !passSince.IsZero() {
				why = fmt.Sprintf("the gate passed for %s, then %s did not answer before the window ended",
					now.Sub(passSince).Round(time.Millisecond), strings.Join(stopped, ", "))
			} else if why == neverRan {
				why = strings.Join(stopped, ", ") + " did not answer before the window ended"
			}
			passSince = time.Time{}
		}
		if !now.Before(deadline) {
			if len(fails) == 0 && len(stopped) == 0 {
				why = fmt.Sprintf("the gate passed for %s only, not the %s required, when the window ended", now.Sub(passSince).Round(time.Millisecond), o.Hold)
			}
			return why, nil
		}
	}
}

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
