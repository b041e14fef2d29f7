// Package fleettest simulates a fleet of boxes in one process, for the
// rollout tests and benchmarks (issue 16): each box is the real manager
// and push API on its own loopback listener, over TLS with its own
// certificate as a box has, with its own generations directory; its
// submit path is a fake that applies nothing, and a chosen share of the
// boxes fail the health gate.
package fleettest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/boxcert"
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
	// Window is the confirm window of the failing boxes: how long they
	// take to roll back. The passing boxes get at least passWindow, so
	// that on a loaded machine a gate round that runs late never turns
	// a box that passes into a rollback (see passWindow).
	Window time.Duration
	Hold   time.Duration
	// lateGate delays the first gate round of every box, as a starved
	// scheduler does (tests).
	lateGate time.Duration
}

// passWindow is the least confirm window of a box that passes its gate.
// The gate commits once it has passed for Hold, and rolls back when a
// round ends after the window: with windows of a second or two, 2,000
// windows open at once on a loaded 2-core machine sometimes got their
// first round only after the window, and a passing box was rolled back
// ("the health gate never ran"). The gate's own timing is tested in
// pkg/manage; here only the verdict counts, and it must not depend on
// the scheduler. A passing box still commits after Hold, so the
// rollouts take no longer.
const passWindow = time.Minute

// Fleet is the simulated boxes and the NOC key they trust.
type Fleet struct {
	Key   manage.Key
	Boxes []*Box
}

// Box is one simulated box.
type Box struct {
	UAI         string
	URL         string // https://127.0.0.1:PORT
	Fingerprint string // of the box's first certificate
	Failing     bool
	M           *manage.Manager
	// Cert is the certificate the box serves, which the NOC may replace
	// (POST /v1/cert), in memory.
	Cert *boxcert.Holder
	srv  *http.Server
}

// certInstaller installs a pushed certificate as the daemon's status
// page does, without the page.
type certInstaller struct{ h *boxcert.Holder }

func (c certInstaller) InstallCertificate(certPEM, keyPEM []byte) (string, error) {
	cert, err := c.h.Install(certPEM, keyPEM, time.Now())
	if err != nil {
		return "", err
	}
	return boxcert.Fingerprint(cert), nil
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
	window := o.Window
	if !failing {
		window = max(window, passWindow)
	}
	var late atomic.Bool
	probe := manage.Probe{Name: "uplinks", Check: func(context.Context, *config.Config, any) error {
		if o.lateGate > 0 && !late.Swap(true) {
			time.Sleep(o.lateGate)
		}
		if failing {
			return fmt.Errorf("no uplink online: renater is offline (it lost 3 probe rounds in a row)")
		}
		return nil
	}}
	m, err := manage.New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, manage.Options{
		Dir: filepath.Join(o.Dir, b.UAI), Submitter: nopSubmit{}, Probes: []manage.Probe{probe},
		Confirm: window, Hold: o.Hold, Every: max(o.Hold/2, 10*time.Millisecond)})
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
	b.M = m
	h, _, err := boxcert.Open("", b.UAI, time.Now())
	if err != nil {
		ln.Close()
		m.Close()
		return nil, err
	}
	b.Cert = h
	// The box's limits; no log: refused handshakes are the tests' point.
	lim := manage.DefaultLimits()
	b.srv = lim.Server(&manage.API{M: m, Cert: certInstaller{h}}, nil)
	b.URL, b.Fingerprint = "https://"+ln.Addr().String(), boxcert.Fingerprint(h.Current())
	go b.srv.Serve(tls.NewListener(lim.Listen(ln), &tls.Config{GetCertificate: h.GetCertificate, MinVersion: tls.VersionTLS12}))
	return b, nil
}

// Pins pins every box's fingerprint, as an inventory with a fingerprint
// column does.
func (f *Fleet) Pins() *boxcert.Pins {
	p := &boxcert.Pins{Pinned: map[string]string{}, Names: map[string]string{}}
	for _, b := range f.Boxes {
		addr := strings.TrimPrefix(b.URL, "https://")
		p.Pinned[addr], p.Names[addr] = b.Fingerprint, b.UAI
	}
	return p
}

// Client is the NOC's HTTP client for the fleet: every box checked
// against its pinned fingerprint.
func (f *Fleet) Client(perHost int, timeout time.Duration) *http.Client {
	tr := boxcert.Transport(f.Pins().Check)
	tr.MaxIdleConnsPerHost = perHost
	return &http.Client{Transport: tr, Timeout: timeout}
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

// Certificate makes a certificate and PKCS#8 key (PEM) for host, valid
// from nb to na, as a NOC would push to a box (POST /v1/cert).
func Certificate(host string, nb, na time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, NotBefore: nb, NotAfter: na,
		DNSNames: []string{host}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	k8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k8}), nil
}
