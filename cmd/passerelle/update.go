package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"passerelle/pkg/boot"
	"passerelle/pkg/box"
	"passerelle/pkg/manage"
	"passerelle/pkg/nocsig"
	"passerelle/pkg/status"
	"passerelle/pkg/supervisor"
	"passerelle/pkg/update"
	"passerelle/pkg/version"
)

// Firmware updates (issue 18, docs/updates.md): the update service
// installs signed bundles into the inactive A/B slot; its API is served
// on the management API's listener (POST /v1/update), and with
// --update-listen on one more address for the lab and the qemu tests.

// updateFlags are the run flags of the updates.
type updateFlags struct {
	dir    string
	slots  string
	listen string
}

func (f *updateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "update-dir", "", "results of the firmware updates (default <perm-dir>/update as init, <update-slots>/results with --update-slots; off otherwise)")
	fs.StringVar(&f.slots, "update-slots", "", "file-backed A/B slots in this `directory` (a.img, b.img, slots.json): the lab and development runs")
	fs.StringVar(&f.listen, "update-listen", "", "also serve /v1/update on this `address` without asking the tailnet who calls (the signature is checked in any case): lab and qemu tests only")
}

// updateState is the daemon's part of the updates; api is nil when they
// are off.
type updateState struct {
	u   *update.Updater
	api *update.API
}

// updateTarget is this box's A/B slots: the files of --update-slots, or
// the image's (pkg/slots) when the box booted from one, or none.
func (d *daemon) updateTarget(f updateFlags) (update.Target, error) {
	if f.slots != "" {
		return update.FileSlots{Dir: f.slots}, nil
	}
	if d.sl.s != nil {
		if _, err := d.sl.s.Booted(); err == nil {
			return d.sl.s, nil // the image's A/B slots (pkg/slots)
		}
	}
	return nil, nil
}

// setupUpdate builds the update service, or none when it has nowhere to
// keep its results.
func (d *daemon) setupUpdate(f updateFlags) error {
	dir := f.dir
	switch {
	case dir != "":
	case d.pid1:
		dir = filepath.Join(d.flags.permDir, "update")
	case f.slots != "":
		dir = filepath.Join(f.slots, "results")
	default:
		d.log.Info("firmware updates off (no --update-dir)")
		return nil
	}
	target, err := d.updateTarget(f)
	if err != nil {
		return err
	}
	o := update.Options{Dir: dir, Target: target}
	if d.pid1 {
		// The orderly shutdown of init: services stopped, /perm
		// unmounted, then reboot(2).
		o.Reboot = func() error { return syscall.Kill(os.Getpid(), syscall.SIGTERM) }
	}
	u, err := update.New(box.Deps{Log: d.log, Metrics: d.c.metrics, Health: d.c.health}, o)
	if err != nil {
		return err
	}
	d.up = updateState{u: u, api: &update.API{U: u, Trust: d.updateTrust, Boot: bootID(), Slots: d.updateSlots}}
	if f.listen != "" {
		d.extra = append(d.extra, supervisor.Spec{Name: "update-api", Run: func(ctx context.Context) error {
			return d.serveUpdateAPI(ctx, f.listen, d.up.api)
		}})
	}
	return nil
}

// bootID identifies this boot (the kernel's boot_id), so the NOC can
// follow a box through an update's restart; nil when unknown.
func bootID() func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil
	}
	id := strings.TrimSpace(string(b))
	return func() string { return id }
}

// updateSlots is the image's A/B slots for the NOC (GET /v1/update):
// which runs, whether its trial is undecided, the last trial.
func (d *daemon) updateSlots() *update.SlotState {
	if d.sl.s == nil {
		return nil
	}
	st := d.sl.s.Status()
	if st.Booted == "" {
		return nil
	}
	out := &update.SlotState{Booted: st.Booted, Trying: st.Trying}
	if l := st.Last; l != nil {
		out.LastSlot, out.LastVersion, out.LastOutcome, out.LastDetail = l.Slot, l.Version, l.Outcome, l.Detail
	}
	return out
}

// updateTrust is what an update is checked against now: the running
// configuration's NOC keys and UAI, the image's board (the
// configuration's when the daemon does not run from an image) and this
// firmware's version.
func (d *daemon) updateTrust() (update.Trust, error) {
	t := update.Trust{Running: version.Version, Now: time.Now()}
	cfg := d.c.box.Current()
	if cfg != nil {
		t.Board, t.UAI = cfg.Board, cfg.Identity.UAI
		t.Keys = nocsig.FromConfig(cfg.Management.TrustedKeys)
	}
	if d.pid1 {
		if b, err := os.ReadFile(boot.ImageBoardFile); err == nil {
			t.Board = strings.TrimSpace(string(b))
		}
	}
	if cfg == nil {
		return t, errors.New("the box has no running configuration yet: it trusts no NOC key")
	}
	return t, nil
}

// serveUpdateAPI serves the update API alone on addr (--update-listen),
// over TLS with the box's certificate like the management API
// (passerellectl speaks nothing else).
func (d *daemon) serveUpdateAPI(ctx context.Context, addr string, api *update.API) error {
	tlsConf, err := d.apiTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	lim := manage.DefaultLimits() // as the management API's listener
	ln = tls.NewListener(lim.Listen(ln), tlsConf)
	mux := http.NewServeMux()
	mux.Handle("/v1/update", api)
	srv := lim.Server(mux, d.log)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// LastUpdate shows the last firmware update on the first screen
// (status.UpdateSource).
func (s *statusSource) LastUpdate() (status.LastUpdate, bool) {
	if s.d.up.u == nil {
		return status.LastUpdate{}, false
	}
	r, ok := s.d.up.u.Last()
	if !ok {
		return status.LastUpdate{}, false
	}
	return status.LastUpdate{At: r.At, Outcome: r.Outcome, Version: r.Version, Slot: r.Slot, Reason: r.Reason, Detail: r.Detail}, true
}
