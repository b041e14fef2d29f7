// Package fleettest simulates a fleet of boxes in one process, for the
// rollout tests and benchmarks (issue 16): each box is the real manager
// and push API on its own loopback listener, with its own generations
// directory; its submit path is a fake that applies nothing, and a chosen
// share of the boxes fail the health gate.
package fleettest

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
)

// baseConfig is a small valid school; UAI and keys are filled in.
const baseConfig = `version: 1
board: lab
identity:
  uai: %s
  name: %s
  academy: lille
uplinks:
  - name: renater
    interface: wan0
    address: 192.0.2.2/30
    gateway: 192.0.2.1
zones:
  - name: admin
    kind: administrative
    interfaces: [lan1]
    subnet: 10.20.0.0/24
    address: 10.20.0.1
dns:
  upstreams:
    - address: 203.0.113.10:53
management:
  trusted_keys:
    - name: %s
      public_key: %s
`

// UAI returns the i-th simulated school code (with its check letter).
func UAI(i int) string {
	d := fmt.Sprintf("09%05d", i%100000)
	n, _ := strconv.Atoi(d)
	return d + string("ABCDEFGHJKLMNPRSTUVWXYZ"[n%23])
}

// Config is box i's configuration text, named name, trusting key.
func Config(i int, name string, key manage.Key) string {
	pub := base64.StdEncoding.EncodeToString(key.Private.Public().(ed25519.PublicKey))
	return fmt.Sprintf(baseConfig, UAI(i), name, key.ID, pub)
}

// Options shape a fleet.
type Options struct {
	N         int
	FailShare float64 // share of boxes whose gate never passes
	Seed      uint64  // which boxes fail
	Dir       string  // generations directories, one per box
	Window    time.Duration
	Hold      time.Duration
}

// Fleet is the simulated boxes and the NOC key they trust.
type Fleet struct {
	Key   manage.Key
	Boxes []*Box
}

// Box is one simulated box.
type Box struct {
	UAI     string
	URL     string
	Failing bool
	M       *manage.Manager
	srv     *http.Server
}

type nopSubmit struct{}

func (nopSubmit) Submit(context.Context, *config.Config, string) error { return nil }

// Start starts the fleet: N listeners on 127.0.0.1.
func Start(o Options) (*Fleet, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	f := &Fleet{Key: manage.Key{ID: "noc-sim", Private: priv}}
	rng := rand.New(rand.NewPCG(o.Seed, 16))
	failing := map[int]bool{}
	for len(failing) < int(o.FailShare*float64(o.N)) {
		failing[rng.IntN(o.N)] = true
	}
	// The configurations parse in parallel: it is most of the start-up.
	f.Boxes = make([]*Box, o.N)
	errs := make(chan error, o.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range o.N {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := f.startBox(i, failing[i], o)
			if err != nil {
				errs <- err
				return
			}
			f.Boxes[i] = b
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Fleet) startBox(i int, failing bool, o Options) (*Box, error) {
	b := &Box{UAI: UAI(i), Failing: failing}
	text := Config(i, "base", f.Key)
	cfg, err := config.Parse(b.UAI+".yaml", []byte(text))
	if err != nil {
		return nil, err
	}
	probe := manage.Probe{Name: "uplinks", Check: func(context.Context, *config.Config, any) error {
		if failing {
			return fmt.Errorf("no uplink online: renater is offline (it lost 3 probe rounds in a row)")
		}
		return nil
	}}
	m, err := manage.New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, manage.Options{
		Dir: filepath.Join(o.Dir, b.UAI), Submitter: nopSubmit{}, Probes: []manage.Probe{probe},
		Confirm: o.Window, Hold: o.Hold, Every: max(o.Hold/2, 10*time.Millisecond)})
	if err != nil {
		return nil, err
	}
	m.Boot([]byte(text), b.UAI+".yaml")
	m.Running(cfg, []byte(text))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.Close()
		return nil, err
	}
	b.M, b.URL = m, "http://"+ln.Addr().String()
	b.srv = &http.Server{Handler: &manage.API{M: m}, ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

// Targets signs one bundle per box (version, config named name).
func (f *Fleet) Targets(version uint64, name string) ([]manage.Target, error) {
	out := make([]manage.Target, len(f.Boxes))
	now := time.Now()
	for i, b := range f.Boxes {
		bundle, err := manage.Sign(manage.Payload{UAI: b.UAI, Version: version, Expires: now.Add(time.Hour), SignedAt: now,
			Name: b.UAI + ".yaml", Config: Config(i, name, f.Key)}, f.Key)
		if err != nil {
			return nil, err
		}
		out[i] = manage.Target{UAI: b.UAI, URL: b.URL, Bundle: bundle}
	}
	return out, nil
}

// Failing lists the UAIs of the boxes that fail the gate.
func (f *Fleet) Failing() []string {
	var out []string
	for _, b := range f.Boxes {
		if b.Failing {
			out = append(out, b.UAI)
		}
	}
	return out
}

// Close stops every box.
func (f *Fleet) Close() {
	for _, b := range f.Boxes {
		if b != nil {
			b.srv.Close()
			b.M.Close()
		}
	}
}
