package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/dhcpd"
	"passerelle/pkg/dnsfilter"
	"passerelle/pkg/eventlog"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/netmark"
	"passerelle/pkg/status"
	"passerelle/pkg/timesync"
	"passerelle/pkg/tunnel"
	"passerelle/pkg/version"
)

// The technician's view (issue 17): the persistent event log, the status
// page and the control socket, wired to the composition here so that
// pkg/status imports no component.

// statusFlags are `passerelle run`'s options of the technician's view.
type statusFlags struct {
	eventLogDir string // "auto": <perm>/log as init, none otherwise
	statusDir   string // "auto": <perm>/status as init, in memory otherwise
	control     string // the control socket; "" for none
}

func (f *statusFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&f.eventLogDir, "event-log-dir", "auto", "directory of the persistent event log (auto: <perm-dir>/log when running as init, none otherwise; none: no persistent log)")
	fs.StringVar(&f.statusDir, "status-dir", "auto", "directory of the status page's certificate (auto: <perm-dir>/status when running as init; otherwise a new certificate each start)")
	fs.StringVar(&f.control, "control-socket", status.DefaultControlSocket, "unix socket answering passerelle status, why and leases (empty: none)")
}

func (f *statusFlags) dir(v, perm, sub string) string {
	switch v {
	case "auto":
		if os.Getpid() == 1 {
			return filepath.Join(perm, sub)
		}
		return ""
	case "none":
		return ""
	}
	return v
}

// withEventLog tees the daemon's log into the persistent ring in dir (no
// ring when dir is ""). The ring is closed by the returned function.
func withEventLog(log *slog.Logger, dir string) (*slog.Logger, *eventlog.Ring) {
	if dir == "" {
		return log, nil
	}
	ring, err := eventlog.Open(dir, eventlog.Options{})
	if err != nil {
		log.Error("persistent event log unavailable", "dir", dir, "err", err)
		return log, nil
	}
	return slog.New(eventlog.NewHandler(log.Handler(), ring)), ring
}

// startStatus starts the status page and the control socket; the
// returned function stops them.
func startStatus(d *daemon, f statusFlags, ring *eventlog.Ring) func() {
	ctx, cancel := context.WithCancel(context.Background())
	logDir := ""
	if ring != nil {
		logDir = ring.Dir()
		go ring.Run(ctx)
		// /perm is unmounted at shutdown: the log's file must be closed.
		d.onShutdown = append(d.onShutdown, ring.Close)
	}
	src := newStatusSource(d)
	var gens status.Generations
	if d.mg.mgr != nil {
		gens = statusGenerations{d.mg.mgr}
	}
	srv := status.New(status.Options{Source: src, Log: d.log.With("component", "status"),
		Restarter: d.c.sup, Generations: gens,
		StateDir: f.dir(f.statusDir, d.flags.permDir, "status"), EventLogDir: logDir, Uplinks: src,
		// The listeners' connection counts and refusals (default limits).
		Metrics: d.c.metrics,
		// The orderly shutdown: as init it reboots the board; elsewhere
		// (lab, development) the daemon exits.
		Reboot: func() error { return syscall.Kill(os.Getpid(), syscall.SIGTERM) }})
	// The box has one certificate: the management API serves the page's
	// (made at first boot on /perm), so the fingerprint shown on the
	// screen is the one the NOC pins.
	d.cert = srv.Certificate
	// ... and a certificate the NOC pushes over that API replaces it for
	// both, from the next handshake.
	d.certInstall = srv
	go srv.Run(ctx)
	if f.control != "" {
		go func() {
			if err := srv.ServeControl(ctx, f.control); err != nil {
				d.log.Warn("control socket unavailable: passerelle status cannot reach this daemon", "socket", f.control, "err", err)
			}
		}()
	}
	return cancel
}

// statusGenerations shows the NOC's generations to the status page and
// lets the technician confirm the pending one or roll back.
type statusGenerations struct{ m *manage.Manager }

func (g statusGenerations) List() ([]status.Generation, error) {
	st, err := g.m.Store().State()
	if err != nil {
		return nil, err
	}
	gs, err := g.m.Store().List()
	out := make([]status.Generation, 0, len(gs))
	for _, x := range gs {
		out = append(out, status.Generation{N: x.N, Version: x.Version, State: x.State, Source: x.Source, AppliedAt: x.AppliedAt,
			Why: x.Why, Current: x.N == st.Current || (st.Pending != nil && x.N == st.Pending.Gen)})
	}
	return out, err
}

func (g statusGenerations) Confirm() (int, error) {
	r, err := g.m.Confirm()
	return r.Gen, err
}

func (g statusGenerations) RollBack(ctx context.Context, why string) (int, error) {
	r, err := g.m.RollBack(ctx, why)
	return r.Gen, err
}

// statusSource shows the composition to the status page in its terms.
type statusSource struct {
	d    *daemon
	dns  *dnsfilter.Filter
	dhcp *dhcpd.Server
	tun  *tunnel.Tunnel
	ts   *timesync.Service
}

func newStatusSource(d *daemon) *statusSource {
	s := &statusSource{d: d}
	for _, c := range d.c.components {
		switch x := c.(type) {
		case *dnsfilter.Filter:
			s.dns = x
		case *dhcpd.Server:
			s.dhcp = x
		case *tunnel.Tunnel:
			s.tun = x
		case *timesync.Service:
			s.ts = x
		}
	}
	return s
}

func (s *statusSource) Config() *config.Config     { return s.d.c.box.Current() }
func (s *statusSource) Warnings() []health.Warning { return s.d.c.health.List() }
func (s *statusSource) Version() string            { return version.String() }

func (s *statusSource) Applied() status.Applied {
	var a status.Applied
	if p := s.d.applied.Load(); p != nil {
		a = *p
	}
	// With the NOC's pushes (issue 16): its generation, and whether the
	// running one still awaits its health check's confirmation.
	if m := s.d.mg.mgr; m != nil {
		st := m.Status()
		a.Managed = true
		if st.Generation > 0 {
			a.Generation = st.Generation
		}
		if st.Pending != nil {
			a.Pending, a.Deadline = true, st.Pending.Deadline
			a.Generation = st.Pending.Gen
		}
	}
	return a
}

func (s *statusSource) Uplinks() []status.Uplink {
	var out []status.Uplink
	for _, u := range s.d.c.uplinks.Status() {
		out = append(out, status.Uplink{Name: u.Name, Interface: u.Interface, State: u.State.String(), Since: u.Since, Reason: u.Reason,
			Carrier: u.Carrier, Active: u.Active, Standby: u.Standby, RTT: u.RTT, Loss: u.Loss, Address: u.Address, Gateway: u.Gateway})
	}
	return out
}

// Pin pins a diagnostic's socket to the named uplink the way the
// uplink's own probes are: bound to its interface and marked for its
// routing table, so it leaves there whichever link carries new flows.
func (s *statusSource) Pin(name string) (func(string, string, syscall.RawConn) error, error) {
	mark, ok := s.d.c.uplinks.Mark(name)
	if !ok {
		return nil, fmt.Errorf("no uplink named %q", name)
	}
	for _, u := range s.d.c.uplinks.Status() {
		if u.Name == name {
			return netmark.BindControl(u.Interface, mark), nil
		}
	}
	return nil, fmt.Errorf("uplink %s has no interface yet", name)
}

func (s *statusSource) Tunnel() (status.Tunnel, bool) {
	if s.tun == nil {
		return status.Tunnel{}, false
	}
	st := s.tun.Status()
	enabled := false
	if c := s.Config(); c != nil {
		enabled = c.Tunnel.Enabled
	}
	return status.Tunnel{Enabled: enabled, Up: st.Up, Reason: st.Reason, Since: st.Since, RTT: st.RTT, Via: st.Via,
		Enrolment: string(st.Enrolment), KeyFile: st.KeyFile,
		Backend: st.Backend, Addrs: st.Addrs, Peers: st.Peers, PeersOnline: st.PeersOnline, Academy: st.Academy, AcademyIP: st.AcademyIP,
		Routes: st.Routes, Path: string(st.Path), Endpoint: st.Endpoint, Relay: st.Relay, LastHandshake: st.LastHandshake,
		RxBytes: st.RxBytes, TxBytes: st.TxBytes}, true
}

func (s *statusSource) Time() status.TimeSync {
	if s.ts == nil {
		return status.TimeSync{}
	}
	st := s.ts.Status()
	out := status.TimeSync{Synced: st.Synced, Offset: st.Offset, LastSync: st.LastSync, Err: st.Err}
	if st.Server.IsValid() {
		out.Server = st.Server.String()
	}
	return out
}

func (s *statusSource) Why(zone, name string) status.Why {
	if s.dns == nil {
		return status.Why{Zone: zone, Name: name, Verdict: "unknown-zone"}
	}
	w := s.dns.Why(zone, name)
	l := w.Lists
	return status.Why{Zone: w.Zone, Name: w.Name, Profile: w.Profile, Verdict: w.Verdict, Rule: w.Rule, Category: w.Category,
		BlockPage: w.BlockPage, Err: w.Err,
		Lists: status.ListsInfo{Loaded: l.Loaded, Version: l.Version, Since: l.Since, Published: l.Published, Categories: l.Categories, Domains: l.Domains}}
}

func (s *statusSource) Usage() []status.ZoneUsage {
	if s.dhcp == nil {
		return nil
	}
	var out []status.ZoneUsage
	for _, u := range s.dhcp.Usage() {
		out = append(out, status.ZoneUsage{Zone: u.Zone, Pool: u.Pool, InUse: u.InUse, Active: u.Active})
	}
	return out
}

func (s *statusSource) Leases(zone string) []status.Lease {
	if s.dhcp == nil {
		return nil
	}
	var out []status.Lease
	for _, l := range s.dhcp.Leases(zone) {
		out = append(out, status.Lease{Zone: l.Zone, Addr: l.Addr, MAC: l.MAC, Hostname: l.Hostname, Expiry: l.Expiry})
	}
	return out
}

func (s *statusSource) DNSStats() []status.DNSStat {
	if s.dns == nil {
		return nil
	}
	var out []status.DNSStat
	for _, x := range s.dns.Stats() {
		out = append(out, status.DNSStat{Hour: x.Hour, Zone: x.Zone, Reason: x.Reason, Category: x.Category, Blocked: x.Blocked})
	}
	return out
}

func (s *statusSource) Services() []status.Service {
	var out []status.Service
	for _, x := range s.d.c.sup.Status() {
		out = append(out, status.Service{Name: x.Name, State: string(x.State), Since: x.Since, Restarts: x.Restarts, LastExit: x.LastExit, Reason: x.Reason})
	}
	return out
}

func (s *statusSource) FirewallCounters() ([]status.Counter, error) {
	cs, err := s.d.c.fw.Counters()
	out := make([]status.Counter, 0, len(cs))
	for _, c := range cs {
		out = append(out, status.Counter{Name: c.Name, Packets: c.Packets, Bytes: c.Bytes})
	}
	return out, err
}

func (s *statusSource) ServiceOutput(name string) ([]byte, []byte, bool) {
	return s.d.c.sup.Output(name)
}

func (s *statusSource) Boot() []status.BootPhase {
	var out []status.BootPhase
	for _, r := range s.d.BootReports() {
		p := status.BootPhase{Phase: r.Phase}
		for _, st := range r.Report {
			bs := status.BootStep{Name: st.Name, Took: st.Took}
			if st.Note != "" {
				bs.Name += " (" + st.Note + ")"
			}
			if st.Err != nil {
				bs.Err = st.Err.Error()
			}
			p.Steps = append(p.Steps, bs)
		}
		out = append(out, p)
	}
	return out
}

// appliedState is the daemon's record of the running configuration, read
// by the status page without waiting for an apply in progress.
type appliedState = atomic.Pointer[status.Applied]

// noteApplied records a configuration's outcome for the status page.
func (d *daemon) noteApplied(source string, err error) {
	prev := status.Applied{}
	if a := d.applied.Load(); a != nil {
		prev = *a
	}
	if err != nil {
		prev.LastError = err.Error()
	} else {
		prev = status.Applied{Generation: prev.Generation + 1, Source: source, At: time.Now(), Path: d.path}
	}
	d.applied.Store(&prev)
}
