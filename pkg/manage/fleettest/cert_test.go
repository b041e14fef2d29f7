package fleettest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/manage"
	"passerelle/pkg/nocsig"
)

// TestCertPushOverTheAPI: POST /v1/cert refuses, each with its reason
// and nothing changed, an envelope that is not signed, signed by an
// unknown key, signed under another context (a bundle's signature),
// signed for another box, expired, or carrying a certificate the box
// cannot serve (expired, another certificate's key); a good one is
// installed and the very next handshake shows its fingerprint.
func TestCertPushOverTheAPI(t *testing.T) {
	f, err := Start(Options{N: 1, Dir: t.TempDir(), Window: 2 * time.Second, Hold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := f.Boxes[0]
	now := time.Now()
	good, goodKey, err := Certificate("box.example", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	old, oldKey, _ := Certificate("box.example", now.AddDate(-1, 0, 0), now.Add(-time.Hour))
	_, otherKey, _ := Certificate("box.example", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	_, stranger, _ := ed25519.GenerateKey(nil)
	payload := func(mod func(*manage.CertPayload)) manage.CertPayload {
		p := manage.CertPayload{UAI: b.UAI, Expires: now.Add(time.Hour), SignedAt: now, Certificate: string(good), Key: string(goodKey)}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	seal := func(p manage.CertPayload, context string, keys ...manage.Key) []byte {
		p.Format = manage.Format
		raw, _ := json.Marshal(p)
		out, _ := json.Marshal(nocsig.Seal(context, raw, keys...))
		return out
	}
	sign := func(p manage.CertPayload) []byte {
		out, err := manage.SignCert(p, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name   string
		body   []byte
		reason string
	}{
		{"not JSON", []byte("hello"), "malformed"},
		{"not signed", seal(payload(nil), nocsig.ContextCert), "not-signed"},
		{"unknown key", seal(payload(nil), nocsig.ContextCert, manage.Key{ID: "stranger", Private: stranger}), "unknown-key"},
		{"a bundle's signature", seal(payload(nil), nocsig.ContextBundle, f.Key), "bad-signature"},
		{"for another box", sign(payload(func(p *manage.CertPayload) { p.UAI = "0590000A" })), "wrong-uai"},
		{"envelope expired", sign(payload(func(p *manage.CertPayload) { p.Expires = now.Add(-time.Minute) })), "expired"},
		{"certificate expired", sign(payload(func(p *manage.CertPayload) { p.Certificate, p.Key = string(old), string(oldKey) })), boxcert.RefusedExpired},
		{"another certificate's key", sign(payload(func(p *manage.CertPayload) { p.Key = string(otherKey) })), boxcert.RefusedKeyMismatch},
		{"no key", sign(payload(func(p *manage.CertPayload) { p.Key = "" })), boxcert.RefusedNoKey},
		{"garbled certificate", sign(payload(func(p *manage.CertPayload) {
			p.Certificate = "-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString([]byte("nope")) + "\n-----END CERTIFICATE-----\n"
		})), boxcert.RefusedCertificate},
	}
	c := f.Client(1, 10*time.Second)
	post := func(t *testing.T, c *http.Client, body []byte) (int, manage.CertResult) {
		t.Helper()
		resp, err := c.Post(b.URL+"/v1/cert", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res manage.CertResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, res
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, res := post(t, c, tt.body)
			if code != http.StatusUnprocessableEntity || res.Outcome != "rejected" || res.Reason != tt.reason || res.Detail == "" {
				t.Errorf("HTTP %d %+v, want 422 rejected %s with a detail", code, res, tt.reason)
			}
			if fp := boxcert.Fingerprint(b.Cert.Current()); fp != b.Fingerprint {
				t.Errorf("a refused certificate is served: %s", fp)
			}
		})
	}
	code, res := post(t, c, sign(payload(nil)))
	gc, _ := boxcert.Validate(good, goodKey, now)
	want := boxcert.Fingerprint(gc)
	if code != http.StatusOK || res.Outcome != "installed" || res.Fingerprint != want || res.KeyID != f.Key.ID {
		t.Fatalf("good certificate: HTTP %d %+v, want installed %s", code, res, want)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(b.URL, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the fingerprint
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := boxcert.FingerprintDER(conn.ConnectionState().PeerCertificates[0].Raw); got != want {
		t.Errorf("the next handshake shows %s, want the pushed %s", got, want)
	}
}
