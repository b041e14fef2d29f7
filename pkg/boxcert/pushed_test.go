package boxcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nocCert makes a certificate as a NOC's CA would sign one (self-signed
// here: the box does not check the issuer, the NOC's signature on the
// envelope is the trust), valid from nb to na, with its key in PKCS#8.
func nocCert(t *testing.T, nb, na time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "0599999Y.ac-lille.example"},
		NotBefore: nb, NotAfter: na, DNSNames: []string{"0599999Y.ac-lille.example"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k8})
}

func TestPushedCertificateRefusals(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	good, goodKey := nocCert(t, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	_, otherKey := nocCert(t, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	future, futureKey := nocCert(t, now.Add(time.Hour), now.AddDate(1, 0, 0))
	old, oldKey := nocCert(t, now.AddDate(-1, 0, 0), now.Add(-time.Minute))
	garbled := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	garbledKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})
	tests := []struct {
		name      string
		cert, key []byte
		reason    string
	}{
		{"no PEM at all", []byte("hello"), goodKey, RefusedNoCertificate},
		{"key given as the certificate", goodKey, goodKey, RefusedNoCertificate},
		{"certificate does not parse", garbled, goodKey, RefusedCertificate},
		{"no key", good, nil, RefusedNoKey},
		{"key does not parse", good, garbledKey, RefusedKey},
		{"another certificate's key", good, otherKey, RefusedKeyMismatch},
		{"not yet valid", future, futureKey, RefusedNotYetValid},
		{"expired", old, oldKey, RefusedExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			h, _, err := Open(dir, "box", now)
			if err != nil {
				t.Fatal(err)
			}
			before := Fingerprint(h.Current())
			_, err = h.Install(tt.cert, tt.key, now)
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != tt.reason {
				t.Fatalf("Install: %v, want refused %s", err, tt.reason)
			}
			if re.Detail == "" {
				t.Error("refusal without detail")
			}
			if Fingerprint(h.Current()) != before || h.Pushed() {
				t.Error("a refused certificate changed the served one")
			}
			if _, err := os.Stat(filepath.Join(dir, pushedFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused certificate was stored: %v", err)
			}
		})
	}
}

// handshakeFingerprint connects to addr and returns the fingerprint of
// the certificate the server presents.
func handshakeFingerprint(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the fingerprint
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return FingerprintDER(c.ConnectionState().PeerCertificates[0].Raw)
}

// TestPushedCertificateServedAtOnceAndKept: a good certificate is served
// from the next handshake on, without restarting the listener, stored in
// one 0600 file, and served again after a restart (Open); once it has
// expired, a restart falls back to the first-boot certificate and says
// why.
func TestPushedCertificateServedAtOnceAndKept(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	h, aside, err := Open(dir, "box", now)
	if err != nil || aside != nil {
		t.Fatal(err, aside)
	}
	firstBoot := Fingerprint(h.Current())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: h.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	if got := handshakeFingerprint(t, ln.Addr().String()); got != firstBoot {
		t.Fatalf("served %s, want the first-boot certificate %s", got, firstBoot)
	}
	certPEM, keyPEM := nocCert(t, now.Add(-time.Hour), now.Add(48*time.Hour))
	c, err := h.Install(certPEM, keyPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	pushed := Fingerprint(c)
	if pushed == firstBoot || !h.Pushed() {
		t.Fatal("the pushed certificate is not the current one")
	}
	if got := handshakeFingerprint(t, ln.Addr().String()); got != pushed {
		t.Errorf("after the push the handshake shows %s, want the pushed %s", got, pushed)
	}
	st, err := os.Stat(filepath.Join(dir, pushedFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", pushedFile, st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	h2, aside, err := Open(dir, "box", now)
	if err != nil || aside != nil {
		t.Fatal(err, aside)
	}
	if Fingerprint(h2.Current()) != pushed || !h2.Pushed() {
		t.Error("after a restart the pushed certificate is not served")
	}
	h3, aside, err := Open(dir, "box", now.Add(72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var re *RefusedError
	if !errors.As(aside, &re) || re.Reason != RefusedExpired {
		t.Errorf("expired pushed certificate set aside for %v, want expired", aside)
	}
	if Fingerprint(h3.Current()) != firstBoot || h3.Pushed() {
		t.Error("with the pushed certificate expired the first-boot one is not served")
	}
}
