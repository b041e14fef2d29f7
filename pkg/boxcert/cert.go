// Package boxcert is the box's own TLS identity and how the NOC checks
// it: the self-signed certificate made at first boot on /perm (the
// status page and the management API serve the same one, so the
// fingerprint a technician reads on the screen is the one the NOC pins),
// its SHA-256 fingerprint, and the NOC side's verification of a box by a
// pinned fingerprint or trust on first use (known.go).
package boxcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"passerelle/pkg/atomicfile"
)

// Certificate files of the box, created at first boot in the state
// directory (/perm/status) and kept: the fingerprint a technician noted,
// or the NOC pinned, stays valid across reboots.
const (
	certFile = "cert.pem"
	keyFile  = "key.pem"
)

// LoadOrCreate returns the box's certificate from dir, creating a
// self-signed one (ECDSA P-256, 20 years) if there is none. With dir ""
// the certificate lives in memory only (a new one each start).
func LoadOrCreate(dir, host string, now time.Time) (tls.Certificate, error) {
	if dir != "" {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return tls.Certificate{}, fmt.Errorf("box certificate: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if host == "" {
		host = "passerelle"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"Passerelle"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return tls.Certificate{}, err
		}
		// The key first: a cut between the two leaves no certificate,
		// and the next start makes a new pair.
		if err := atomicfile.Write(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
			return tls.Certificate{}, err
		}
		if err := atomicfile.Write(filepath.Join(dir, certFile), certPEM, 0o644); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// Fingerprint is the SHA-256 of a certificate, as browsers show it
// (upper-case hex pairs separated by colons).
func Fingerprint(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	return FingerprintDER(c.Certificate[0])
}

// FingerprintDER is the fingerprint of a DER certificate.
func FingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// ParseFingerprint reads a SHA-256 fingerprint as people copy it: hex
// pairs with colons (as the status page shows it) or 64 hex digits, any
// case, optionally after "sha256:" or "SHA256 Fingerprint=". It returns
// the canonical form of Fingerprint.
func ParseFingerprint(s string) (string, error) {
	in := strings.TrimSpace(s)
	h := in
	for _, p := range []string{"sha256:", "SHA256:", "SHA256 Fingerprint=", "sha256 Fingerprint="} {
		h = strings.TrimPrefix(h, p)
	}
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: expected a SHA-256 fingerprint, 32 hex pairs (AB:CD:EF and so on)", in)
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":"), nil
}
