package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/manage"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/tunnel"
	"passerelle/pkg/uplink"
)

// The NOC's configuration push (issue 16, docs/management.md): the daemon
// is the manager's Submitter (its one submit path), gives it the gate's
// probes that need the components (uplinks, tunnel), pins its pulls to the
// preferred uplink, and serves the push API on the tunnel address.

// manageState is the daemon's part of the management; its manager is
// nil when the management is off.
type manageState struct {
	mgr     *manage.Manager
	tun     *tunnel.Tunnel
	started bool // pull client and API handed to the supervisor
	// The health gate, which a system slot on trial runs too (slots.go).
	probes  []manage.Probe
	confirm time.Duration // --confirm-timeout, 0: the configuration's
}

// manageFlags are the run flags of the management.
type manageFlags struct {
	dir       string
	confirm   time.Duration
	pullEvery time.Duration
}

func (f *manageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "manage-dir", "", "generations of the NOC's configuration bundles (default <perm-dir>/manage as init; off otherwise unless given)")
	fs.DurationVar(&f.confirm, "confirm-timeout", 0, "override management.confirm_timeout (lab and tests: short windows)")
	fs.DurationVar(&f.pullEvery, "pull-every", 0, "override management.pull_interval (lab and tests)")
}

// Submit is the manager's way to the one submit path.
func (d *daemon) Submit(ctx context.Context, cfg *config.Config, source string) error {
	return d.submit(ctx, cfg, source)
}

// setupManage builds the manager, or none when there is no generations
// directory (a development run that did not ask for one).
func (d *daemon) setupManage(f manageFlags) error {
	dir := f.dir
	if dir == "" && d.pid1 {
		dir = filepath.Join(d.flags.permDir, "manage")
	}
	if dir == "" {
		d.log.Info("NOC configuration push off (no --manage-dir)")
		return nil
	}
	tun := d.tunnel()
	o := manage.Options{Dir: dir, Submitter: d, Confirm: f.confirm, PullEvery: f.pullEvery, Dial: d.manageDial}
	m, err := manage.New(box.Deps{Log: d.log, Metrics: d.c.metrics, Health: d.c.health}, o)
	if err != nil {
		return err
	}
	probes := d.gateProbes(m)
	m.SetProbes(probes)
	d.mg = manageState{mgr: m, tun: tun, probes: probes, confirm: f.confirm}
	return nil
}

// tunnel is the composition's tunnel component, if any.
func (d *daemon) tunnel() *tunnel.Tunnel {
	for _, c := range d.c.components {
		if t, ok := c.(*tunnel.Tunnel); ok {
			return t
		}
	}
	return nil
}

// gateProbes are the health gate's probes; the NOC's only with a
// manager (it reaches the NOC the manager's way).
func (d *daemon) gateProbes(m *manage.Manager) []manage.Probe {
	tun := d.tunnel()
	ps := []manage.Probe{
		uplinkProbe(d.c.uplinks),
		tunnelProbe(tun),
		manage.DNSProbe(),
		manage.HealthProbe(d.c.health),
		manage.LANProbe(),
	}
	if m != nil {
		ps = append(ps, m.NOCProbe())
	}
	return ps
}

// loadStart reads the configuration the box starts with: the file, or the
// last committed generation (a pending one is rolled back first).
func (d *daemon) loadStart() (*config.Config, []byte, error) {
	text, err := os.ReadFile(d.path)
	if d.mg.mgr == nil {
		if err != nil {
			return nil, nil, err
		}
		cfg, err := loadConfig(d.log, d.path)
		return cfg, text, err
	}
	btext, name := d.mg.mgr.Boot(text, d.path)
	if name == d.path {
		if err != nil {
			return nil, nil, err
		}
		cfg, err := loadConfig(d.log, d.path)
		return cfg, text, err
	}
	cfg, perr := config.Parse(name, btext)
	if perr != nil {
		d.log.Error("the committed generation does not parse; starting from the file", "name", name, "err", perr)
		cfg, err := loadConfig(d.log, d.path)
		return cfg, text, err
	}
	return cfg, btext, nil
}

// manageRunning tells the manager what runs (after the start-up apply and
// SIGHUP) and, the first time, starts its pull client and push API.
func (d *daemon) manageRunning(cfg *config.Config, text []byte) {
	if d.mg.mgr == nil {
		return
	}
	if text == nil {
		text, _ = os.ReadFile(d.path)
	}
	d.mg.mgr.Running(cfg, text)
	if d.mg.started {
		return
	}
	d.mg.started = true
	for _, s := range []supervisor.Spec{
		{Name: "manage-pull", Run: d.mg.mgr.Run},
		{Name: "manage-api", Run: d.serveManageAPI},
	} {
		if err := d.c.sup.Add(s); err != nil {
			d.log.Error("service not supervised", "service", s.Name, "err", err)
		}
	}
}

// manageDial pins the pull client's connections: academy addresses go
// through the tunnel's routes, the rest through the first uplink while it
// is usable, else the active one (as the metrics push).
func (d *daemon) manageDial(ctx context.Context, cfg *config.Config, network, addr string) (net.Conn, error) {
	var dl net.Dialer
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	viaTunnel := err == nil && slices.ContainsFunc(cfg.Tunnel.AcademyPrefixes, func(p netip.Prefix) bool { return p.Contains(ip) })
	if !viaTunnel && len(cfg.Uplinks) > 0 {
		if mark := d.c.uplinks.Preferred(cfg.Uplinks[0].Name); mark != 0 {
			dl.Control = uplink.Control(mark)
		}
	}
	return dl.DialContext(ctx, network, addr)
}

// serveManageAPI serves the push API over TLS on the tunnel's IPv4
// address, and only there, while the tunnel has one; callers must be
// tailnet nodes with one of management.noc_tags. The certificate is the
// box's own (self-signed, on /perm; the NOC pins its fingerprint) or one
// the NOC pushed (POST /v1/cert), read on every handshake.
func (d *daemon) serveManageAPI(ctx context.Context) error {
	if d.mg.tun == nil {
		<-ctx.Done()
		return nil
	}
	tlsConf, err := d.apiTLS()
	if err != nil {
		// Never served in clear: push waits for a certificate, pull
		// still works.
		d.log.Error("management API off", "err", err)
		<-ctx.Done()
		return nil
	}
	api := &manage.API{M: d.mg.mgr, Auth: d.whoIsNOC, Cert: d.certInstall}
	if d.up.api != nil {
		api.Update = d.up.api
	}
	// Timeouts, header and connection caps against hostile or broken
	// clients; the handlers bound and pace the bodies.
	lim := manage.DefaultLimits()
	var (
		srv  *http.Server
		bind string
	)
	stop := func() {
		if srv != nil {
			srv.Close()
			srv, bind = nil, ""
		}
	}
	defer stop()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		cfg := d.mg.mgr.Config()
		want := ""
		if cfg != nil && cfg.Tunnel.Enabled {
			for _, a := range d.mg.tun.Status().Addrs {
				if a.Is4() {
					want = net.JoinHostPort(a.String(), strconv.Itoa(cfg.Management.APIPort))
				}
			}
		}
		if want != bind {
			stop()
			if want != "" {
				ln, err := net.Listen("tcp", want)
				if err != nil {
					d.log.Warn("management API cannot listen yet", "addr", want, "err", err)
				} else {
					srv = lim.Server(api, d.log)
					bind = want
					d.log.Info("management API listening", "event", "manage-api-listening", "addr", want, "tls", true)
					go srv.Serve(tls.NewListener(lim.Listen(ln), tlsConf))
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// apiTLS is the TLS configuration of the management API's listeners:
// the box's own certificate (the status page's), never plain HTTP.
func (d *daemon) apiTLS() (*tls.Config, error) {
	if d.cert == nil {
		return nil, errors.New("no certificate")
	}
	if _, err := d.cert(); err != nil {
		return nil, fmt.Errorf("no certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := d.cert()
		return &c, err
	}}, nil
}

// whoIsNOC asks tailscaled who is calling and accepts nodes carrying one
// of the NOC's tags.
func (d *daemon) whoIsNOC(r *http.Request) (string, error) {
	cfg := d.mg.mgr.Config()
	tags := []string{"tag:noc"}
	if cfg != nil && len(cfg.Management.NOCTags) > 0 {
		tags = cfg.Management.NOCTags
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	who, err := d.mg.tun.Client().WhoIs(ctx, r.RemoteAddr)
	if err != nil {
		return "", fmt.Errorf("caller %s unknown to the tailnet: %w", r.RemoteAddr, err)
	}
	if who.Node == nil {
		return "", errors.New("caller is not a tailnet node")
	}
	for _, tg := range who.Node.Tags {
		if slices.Contains(tags, tg) {
			return who.Node.Name + " (" + tg + ")", nil
		}
	}
	return "", fmt.Errorf("node %s has none of the NOC's tags %v", who.Node.Name, tags)
}

// uplinkProbe passes while one uplink is online with carrier.
func uplinkProbe(u *uplink.Manager) manage.Probe {
	return manage.Probe{Name: "uplinks", Check: func(_ context.Context, _ *config.Config, _ any) error {
		var why []string
		for _, s := range u.Status() {
			if s.Carrier && s.State == uplink.StateOnline {
				return nil
			}
			why = append(why, fmt.Sprintf("%s is %s (it %s)", s.Name, s.State, s.Reason))
		}
		return fmt.Errorf("no uplink online: %v", why)
	}}
}

// tunnelProbe passes while the tunnel is up, when the configuration
// enables it.
func tunnelProbe(t *tunnel.Tunnel) manage.Probe {
	return manage.Probe{Name: "tunnel", Check: func(_ context.Context, cfg *config.Config, _ any) error {
		if !cfg.Tunnel.Enabled || t == nil {
			return nil
		}
		if st := t.Status(); !st.Up {
			return fmt.Errorf("tunnel down: %s", st.Reason)
		}
		return nil
	}}
}
