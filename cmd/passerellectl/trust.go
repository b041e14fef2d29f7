package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/manage"
)

// How passerellectl knows it talks to the right box (issue 16): the
// management API serves the box's own self-signed certificate, so the
// box is recognised by the certificate's SHA-256 fingerprint: pinned
// (--fingerprint, or the inventory's fingerprint column), else trusted on
// first use and kept in the known-boxes file; a changed one is refused.

// fingerprintColumn is the inventory column of pinned fingerprints
// (empty cells: trust on first use).
const fingerprintColumn = "fingerprint"

// trustFlags are the options that say which certificates to accept.
type trustFlags struct {
	fingerprint string
	known       string
}

func (f *trustFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.fingerprint, "fingerprint", "", "SHA-256 `fingerprint` of the box's certificate, as its status page shows it (with --box; else trust on first use)")
	fs.StringVar(&f.known, "known-boxes", "", "known-boxes `file`: fingerprints trusted on first use (default <user config dir>/passerelle/known_boxes)")
}

// apiAddr is the address a management API URL dials (host:port): the
// key of pins and known boxes. Only https is accepted: the API speaks
// nothing else.
func apiAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("management API URL %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("management API URL %q: the API speaks HTTPS only, e.g. https://100.64.0.7:8443", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// pins is this run's trust in the targets: pinned[i] (may be empty) is
// target i's pinned fingerprint; --fingerprint pins a lone target.
func (f *trustFlags) pins(targets []manage.Target, pinned []string) (*boxcert.Pins, error) {
	p := &boxcert.Pins{Pinned: map[string]string{}, Names: map[string]string{}}
	for i, t := range targets {
		addr, err := apiAddr(t.URL)
		if err != nil {
			return nil, err
		}
		if t.UAI != "" {
			p.Names[addr] = t.UAI
		}
		raw := ""
		if i < len(pinned) {
			raw = pinned[i]
		}
		if f.fingerprint != "" {
			if len(targets) != 1 {
				return nil, fmt.Errorf("--fingerprint pins one box (--box); an inventory pins in its %q column", fingerprintColumn)
			}
			raw = f.fingerprint
		}
		if raw == "" {
			continue
		}
		fp, err := boxcert.ParseFingerprint(raw)
		if err != nil {
			return nil, fmt.Errorf("box %s: %w", p.Names[addr], err)
		}
		p.Pinned[addr] = fp
	}
	path := f.known
	if path == "" {
		var err error
		if path, err = boxcert.DefaultKnownBoxes(); err != nil {
			return nil, err
		}
	}
	kb, err := boxcert.OpenKnownBoxes(path)
	if err != nil {
		return nil, err
	}
	p.Known = kb
	return p, nil
}

// client is an HTTP client that reaches only boxes the pins accept.
func trustClient(p *boxcert.Pins, timeout time.Duration, perHost int) *http.Client {
	tr := boxcert.Transport(p.Check)
	tr.MaxIdleConnsPerHost = perHost
	return &http.Client{Transport: tr, Timeout: timeout}
}

// saveKnown writes the boxes trusted for the first time in this run.
func saveKnown(p *boxcert.Pins, stderr io.Writer) {
	if p == nil || p.Known == nil {
		return
	}
	n := p.Known.Added()
	if err := p.Known.Save(); err != nil {
		fmt.Fprintf(stderr, "passerellectl: %v\n", err)
		return
	}
	if n > 0 {
		fmt.Fprintf(stderr, "%d new boxes trusted on first use, their fingerprints kept in %s\n", n, p.Known.Path())
	}
}
