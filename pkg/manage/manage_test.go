package manage

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// fakeBox is the daemon's submit path: it records what it was given.
type fakeBox struct {
	mu      sync.Mutex
	sources []string
	uais    []string
	fail    error
}

func (f *fakeBox) Submit(_ context.Context, cfg *config.Config, source string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sources = append(f.sources, source)
	f.uais = append(f.uais, cfg.Identity.Name)
	return f.fail
}

func (f *fakeBox) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sources...)
}

func newKey(t testing.TB, id string) Key {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Private: priv}
}

// demoConfig is the demo school trusting the given keys, with a name
// that tells generations apart.
func demoConfig(t testing.TB, name string, keys ...Key) string {
	data, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "name: Collège de démonstration", "name: "+name, 1)
	s += "management:\n  trusted_keys:\n"
	for _, k := range keys {
		s += "    - name: " + k.ID + "\n      public_key: " + base64.StdEncoding.EncodeToString(k.Private.Public().(ed25519.PublicKey)) + "\n"
	}
	return s
}

type rig struct {
	m   *Manager
	box *fakeBox
	reg *prometheus.Registry
	h   *health.Registry
	dir string
	key Key
}

func newRig(t *testing.T, probes ...Probe) *rig {
	t.Helper()
	r := &rig{box: &fakeBox{}, reg: prometheus.NewRegistry(), h: health.New(time.Now), dir: t.TempDir(), key: newKey(t, "noc-1")}
	r.start(t, probes...)
	return r
}

// start (re)opens the manager on the rig's directory, as a boot does.
func (r *rig) start(t *testing.T, probes ...Probe) {
	t.Helper()
	r.reg = prometheus.NewRegistry()
	m, err := New(box.Deps{Metrics: r.reg, Health: r.h}, Options{Dir: r.dir, Submitter: r.box, Probes: probes,
		Confirm: 5 * time.Second, Hold: 200 * time.Millisecond, Every: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	base := demoConfig(t, "base", r.key)
	text, name := m.Boot([]byte(base), "box.yaml")
	cfg, err := config.Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	m.Running(cfg, text)
	r.m = m
}

func (r *rig) bundle(t *testing.T, version uint64, cfgName string, mod func(*Payload)) []byte {
	t.Helper()
	p := Payload{UAI: "0599999Y", Version: version, Expires: time.Now().Add(time.Hour), SignedAt: time.Now(),
		Config: demoConfig(t, cfgName, r.key)}
	if mod != nil {
		mod(&p)
	}
	b, err := Sign(p, r.key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestManageRejections(t *testing.T) {
	r := newRig(t)
	other := newKey(t, "noc-1") // same name, another key
	stranger := newKey(t, "intruder")
	// A committed version 5 first, so replays have something to replay.
	res := r.m.Handle(context.Background(), r.bundle(t, 5, "v5", nil), "push")
	if res.Outcome != OutcomePending {
		t.Fatalf("setup bundle: %+v", res)
	}
	if fin, _ := r.m.Wait(context.Background(), res.Gen); fin.Outcome != OutcomeCommitted {
		t.Fatalf("setup bundle: %+v", fin)
	}
	signedBy := func(p Payload, keys ...Key) []byte {
		b, err := Sign(p, keys...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := Payload{UAI: "0599999Y", Version: 6, Expires: time.Now().Add(time.Hour), Config: demoConfig(t, "v6", r.key)}
	with := func(f func(*Payload)) Payload { p := good; f(&p); return p }
	tamper := func() []byte {
		var b Bundle
		json.Unmarshal(signedBy(good, r.key), &b)
		raw, _ := base64.StdEncoding.DecodeString(b.Payload)
		raw = []byte(strings.Replace(string(raw), `"version":6`, `"version":7`, 1))
		b.Payload = base64.StdEncoding.EncodeToString(raw)
		out, _ := json.Marshal(b)
		return out
	}
	cases := []struct {
		name   string
		data   []byte
		reason Reason
		detail string
	}{
		{"too large", make([]byte, MaxBundleSize+1), ReasonTooLarge, "more than"},
		{"not json", []byte("config: yes"), ReasonMalformed, "envelope"},
		{"payload not base64", []byte(`{"payload":"%%%","signatures":[]}`), ReasonMalformed, "base64"},
		{"not signed", signedBy(good), ReasonNotSigned, "no signature"},
		{"unknown key", signedBy(good, stranger), ReasonUnknownKey, "intruder"},
		{"bad signature (other key, same name)", signedBy(good, other), ReasonBadSignature, "noc-1"},
		{"bad signature (tampered payload)", tamper(), ReasonBadSignature, "does not match"},
		{"another box", signedBy(with(func(p *Payload) { p.UAI = "0591234A" }), r.key), ReasonWrongUAI, "0591234A"},
		{"expired", signedBy(with(func(p *Payload) { p.Expires = time.Now().Add(-time.Minute) }), r.key), ReasonExpired, "expired"},
		{"replay", signedBy(with(func(p *Payload) { p.Version = 5 }), r.key), ReasonReplay, "not newer than 5"},
		{"config invalid", signedBy(with(func(p *Payload) {
			p.Name = "v6.yaml"
			p.Config = strings.Replace(p.Config, "subnet: 10.20.0.0/24", "subnet: 10.20.0.0/33", 1)
		}), r.key), ReasonConfigInvalid, "v6.yaml:"},
		{"config for another box", signedBy(with(func(p *Payload) {
			p.Config = strings.Replace(p.Config, "uai: 0599999Y", "uai: 0591234A", 1)
		}), r.key), ReasonConfigInvalid, "identity.uai"},
		{"config without keys", signedBy(with(func(p *Payload) {
			p.Config = p.Config[:strings.Index(p.Config, "management:")]
		}), r.key), ReasonConfigInvalid, "trusted_keys"},
	}
	before := r.box.calls()
	gens, _ := r.m.store.List()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := r.m.Handle(context.Background(), c.data, "push")
			if res.Outcome != OutcomeRejected || res.Reason != string(c.reason) {
				t.Fatalf("got %s/%s (%s), want rejected/%s", res.Outcome, res.Reason, res.Detail, c.reason)
			}
			if !strings.Contains(res.Detail, c.detail) {
				t.Errorf("detail %q does not say %q", res.Detail, c.detail)
			}
			rs, _ := r.m.store.Results()
			if last := rs[len(rs)-1]; last.Reason != string(c.reason) || last.Outcome != OutcomeRejected {
				t.Errorf("last result on /perm: %+v", last)
			}
			if v := testutil.ToFloat64(r.m.met.bundles.WithLabelValues(OutcomeRejected, string(c.reason))); v < 1 {
				t.Errorf("metric for %s is %v", c.reason, v)
			}
		})
	}
	if got := r.box.calls(); len(got) != len(before) {
		t.Errorf("rejected bundles reached the box: %v", got[len(before):])
	}
	after, _ := r.m.store.List()
	if len(after) != len(gens) {
		t.Errorf("rejected bundles wrote generations: %d before, %d after", len(gens), len(after))
	}
	if st, _ := r.m.store.State(); st.Highest != 5 || st.Pending != nil {
		t.Errorf("state after rejections: %+v", st)
	}
}

func TestManageCommitAndKeyRotation(t *testing.T) {
	r := newRig(t, HealthProbe(nil))
	ctx := context.Background()
	res := r.m.Handle(ctx, r.bundle(t, 1, "v1", nil), "push")
	fin, err := r.m.Wait(ctx, res.Gen)
	if err != nil || fin.Outcome != OutcomeCommitted {
		t.Fatalf("v1: %+v %v", fin, err)
	}
	// v2 rotates to a new key, signed by the current one.
	next := newKey(t, "noc-2")
	res = r.m.Handle(ctx, r.bundle(t, 2, "v2", func(p *Payload) { p.Config = demoConfig(t, "v2", next) }), "push")
	if fin, _ := r.m.Wait(ctx, res.Gen); fin.Outcome != OutcomeCommitted {
		t.Fatalf("v2: %+v", fin)
	}
	// The old key is no longer trusted; the new one is.
	if res := r.m.Handle(ctx, r.bundle(t, 3, "v3", nil), "push"); res.Reason != string(ReasonUnknownKey) {
		t.Fatalf("old key after rotation: %+v", res)
	}
	r.key = next
	res = r.m.Handle(ctx, r.bundle(t, 3, "v3", func(p *Payload) { p.Config = demoConfig(t, "v3", next) }), "push")
	if fin, _ := r.m.Wait(ctx, res.Gen); fin.Outcome != OutcomeCommitted {
		t.Fatalf("v3: %+v", fin)
	}
	st, _ := r.m.store.State()
	g, _ := r.m.store.Get(st.Current)
	if g.Version != 3 || g.KeyID != "noc-2" || g.State != StateCommitted {
		t.Errorf("current generation: %+v", g)
	}
	// A restart boots the committed generation, not the file.
	r.start(t)
	if r.m.running.Identity.Name != "v3" {
		t.Errorf("booted %q, want v3", r.m.running.Identity.Name)
	}
}

func TestManageGateRollback(t *testing.T) {
	broken := errors.New("no uplink online")
	r := newRig(t, Probe{Name: "uplinks", Check: func(_ context.Context, cfg *config.Config, _ any) error {
		if cfg.Identity.Name == "bad" {
			return broken
		}
		return nil
	}})
	ctx := context.Background()
	res := r.m.Handle(ctx, r.bundle(t, 1, "bad", nil), "pull")
	fin, _ := r.m.Wait(ctx, res.Gen)
	if fin.Outcome != OutcomeRolledBack || fin.Reason != RollbackGate || !strings.Contains(fin.Detail, "no uplink online") {
		t.Fatalf("got %+v", fin)
	}
	if got := r.box.calls(); strings.Join(got, ",") != "bundle-pull,rollback" {
		t.Errorf("submits: %v", got)
	}
	if r.box.uais[len(r.box.uais)-1] != "base" {
		t.Errorf("rollback restored %q, want base", r.box.uais[len(r.box.uais)-1])
	}
	if _, ok := r.h.Get("config-rolled-back"); !ok {
		t.Error("no config-rolled-back warning")
	}
	// A fixed bundle must have a newer version; it then commits.
	if res := r.m.Handle(ctx, r.bundle(t, 1, "good", nil), "pull"); res.Reason != string(ReasonReplay) {
		t.Fatalf("same version again: %+v", res)
	}
	res = r.m.Handle(ctx, r.bundle(t, 2, "good", nil), "pull")
	if fin, _ := r.m.Wait(ctx, res.Gen); fin.Outcome != OutcomeCommitted {
		t.Fatalf("good: %+v", fin)
	}
}

func TestManageApplyFailure(t *testing.T) {
	r := newRig(t)
	r.box.fail = errors.New("firewall: netlink says no")
	res := r.m.Handle(context.Background(), r.bundle(t, 1, "v1", nil), "push")
	if res.Outcome != OutcomeRolledBack || res.Reason != RollbackApply {
		t.Fatalf("got %+v", res)
	}
}

// TestManageRestartInWindow: a box that stops inside the confirm window
// boots the previous generation, and the rollback says whether it
// stopped in order (Stop: reboot, power off) or not (a crash or a power
// cut: only Close, as when the process dies).
func TestManageRestartInWindow(t *testing.T) {
	for _, c := range []struct {
		name      string
		stop      func(m *Manager)
		reason    string
		detailHas string
	}{
		{"orderly reboot", func(m *Manager) { m.Stop("reboot") }, RollbackRestart, "stopped in order (reboot)"},
		{"crash or power cut", func(m *Manager) { m.Close() }, RollbackCrash, "without an orderly shutdown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, Probe{Name: "never", Check: func(context.Context, *config.Config, any) error { return errors.New("not yet") }})
			res := r.m.Handle(context.Background(), r.bundle(t, 1, "new", nil), "push")
			if res.Outcome != OutcomePending {
				t.Fatalf("got %+v", res)
			}
			c.stop(r.m) // the daemon stops inside the window
			r.start(t)
			if r.m.running.Identity.Name != "base" {
				t.Fatalf("booted %q after a restart in the window, want base", r.m.running.Identity.Name)
			}
			g, _ := r.m.store.Get(res.Gen)
			st, _ := r.m.store.State()
			if g.State != StateRolledBack || st.Pending != nil || st.Current == res.Gen || !strings.Contains(g.Why, c.reason+": ") {
				t.Errorf("after boot: gen %+v (%s) state %+v", g.State, g.Why, st)
			}
			rs, _ := r.m.store.Results()
			if last := rs[len(rs)-1]; last.Reason != c.reason || !strings.Contains(last.Detail, c.detailHas) {
				t.Errorf("last result %+v", last)
			}
			if s := r.m.Status(); s.Last == nil || s.Last.Reason != c.reason || len(s.Health) == 0 || !strings.Contains(s.Health[0], "config-rolled-back") {
				t.Errorf("status %+v", s)
			}
			if v := testutil.ToFloat64(r.m.met.bundles.WithLabelValues(OutcomeRolledBack, c.reason)); v != 1 {
				t.Errorf("passerelle_manage_bundles_total{outcome=rolled-back,reason=%s} = %v", c.reason, v)
			}
		})
	}
}

func TestManageKeepsTenGenerations(t *testing.T) {
	r := newRig(t)
	for v := uint64(1); v <= 14; v++ {
		res := r.m.Handle(context.Background(), r.bundle(t, v, "v", nil), "push")
		r.m.Wait(context.Background(), res.Gen)
	}
	gs, _ := r.m.store.List()
	if len(gs) != Keep || gs[0].Version != 14 || gs[0].KeyID != "noc-1" || gs[0].SignedAt.IsZero() {
		t.Fatalf("%d generations kept, newest %+v", len(gs), gs[0].Version)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "state.json")); err != nil {
		t.Fatal(err)
	}
}
