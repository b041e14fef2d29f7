package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/manage"
)

const certUsage = `usage: passerellectl cert push --key FILE --uai UAI --box URL [--fingerprint FP]
         [--known-boxes FILE] [--expires 24h] [--json] CERT.pem KEY.pem

Gives one box the TLS certificate its status page and management API
serve (docs/management.md): CERT.pem (the box's certificate, then its
chain) and KEY.pem (its private key), checked here, signed with the NOC
key for the box's UAI (context passerelle-cert-v1, valid --expires), and
pushed to the box's management API. The box checks the signature, its UAI
and the expiry, then the certificate (PEM, key matching, currently valid)
and serves it from the next connection on; a refusal says why. On
success the known-boxes file trusts the new fingerprint for that box.
` + trustUsage

func cmdCert(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "push" {
		fmt.Fprint(stderr, certUsage)
		return 2
	}
	fs := newFlagSet("cert push", certUsage, stderr)
	var keys keyFlags
	keys.register(fs)
	uai := fs.String("uai", "", "the box's `UAI` (its identity.uai): the certificate is signed for it alone")
	box := fs.String("box", "", "the box's management API `URL`, e.g. https://100.64.0.7:8443")
	expires := fs.Duration("expires", 24*time.Hour, "how long the signed certificate may be installed")
	asJSON := fs.Bool("json", false, "print the box's answer as JSON")
	var trust trustFlags
	trust.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 2 || *uai == "" || *box == "" {
		fs.Usage()
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "passerellectl cert push: %v\n", err)
		return code
	}
	certPEM, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fail(2, err)
	}
	keyPEM, err := os.ReadFile(fs.Arg(1))
	if err != nil {
		return fail(2, err)
	}
	// The box checks again; checking here names the files and spares a
	// round trip for a certificate the box would refuse anyway.
	now := time.Now()
	c, err := boxcert.Validate(certPEM, keyPEM, now)
	if err != nil {
		return fail(1, fmt.Errorf("%s, %s: %w", fs.Arg(0), fs.Arg(1), err))
	}
	want := boxcert.Fingerprint(c)
	ks, err := keys.load()
	if err != nil {
		return fail(2, err)
	}
	if len(ks) == 0 {
		return fail(2, fmt.Errorf("give --key FILE (a NOC signing key)"))
	}
	env, err := manage.SignCert(manage.CertPayload{UAI: *uai, Expires: now.Add(*expires), SignedAt: now,
		Certificate: string(certPEM), Key: string(keyPEM)}, ks...)
	if err != nil {
		return fail(1, err)
	}
	base := strings.TrimSuffix(*box, "/")
	addr, err := apiAddr(base)
	if err != nil {
		return fail(2, err)
	}
	pins, err := trust.pins([]manage.Target{{UAI: *uai, URL: base}}, nil)
	if err != nil {
		return fail(2, err)
	}
	defer saveKnown(pins, stderr)
	// The fingerprint the push went through: the known-boxes file trades
	// it for the new one only if the box was reached with it.
	var (
		mu   sync.Mutex
		seen string
	)
	client := &http.Client{Timeout: time.Minute, Transport: boxcert.Transport(func(a, fp string) error {
		if err := pins.Check(a, fp); err != nil {
			return err
		}
		mu.Lock()
		seen = fp
		mu.Unlock()
		return nil
	})}
	resp, err := client.Post(base+"/v1/cert", "application/json", bytes.NewReader(env))
	if err != nil {
		return fail(1, fmt.Errorf("box %s: %w", *uai, err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var res manage.CertResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fail(1, fmt.Errorf("box %s: HTTP %s: %s", *uai, resp.Status, strings.TrimSpace(string(body))))
	}
	if *asJSON {
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
	}
	if res.Outcome != "installed" {
		if !*asJSON {
			fmt.Fprintf(stdout, "box %s: certificate %s (%s): %s\n", *uai, res.Outcome, res.Reason, res.Detail)
		}
		return 1
	}
	if res.Fingerprint != want {
		return fail(1, fmt.Errorf("box %s answered fingerprint %s, not the pushed certificate's %s", *uai, res.Fingerprint, want))
	}
	mu.Lock()
	old := seen
	mu.Unlock()
	if pins.Known != nil && old != "" {
		pins.Known.Replace(addr, *uai, old, want)
	}
	// Proof: a new connection sees the new certificate.
	if err := checkServes(addr, want); err != nil {
		return fail(1, fmt.Errorf("box %s: %w", *uai, err))
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "box %s: certificate installed, fingerprint %s (was %s), valid until %s\n", *uai, want, old, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return 0
}

// checkServes connects to addr and checks that it presents the
// certificate with fingerprint fp (the fingerprint is the check, as for
// every box: no CA).
func checkServes(addr, fp string) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second},
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // checked by fingerprint below
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	got := boxcert.FingerprintDER(conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw)
	if got != fp {
		return fmt.Errorf("after the push the box presents %s, not the pushed certificate %s", got, fp)
	}
	return nil
}
