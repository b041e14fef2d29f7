package boxcert

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"passerelle/pkg/atomicfile"
)

// pushedFile holds the certificate the NOC pushed and its key, in one
// file so that one rename replaces both: a power cut never leaves a
// certificate beside another certificate's key. Mode 0600: it holds a
// private key.
const pushedFile = "noc.pem"

// Reasons a pushed certificate is refused; the management API answers
// with the same words.
const (
	RefusedNoCertificate = "no-certificate" // no CERTIFICATE PEM block
	RefusedCertificate   = "bad-certificate"
	RefusedNoKey         = "no-key" // no PRIVATE KEY PEM block
	RefusedKey           = "bad-key"
	RefusedKeyMismatch   = "key-mismatch"
	RefusedNotYetValid   = "not-yet-valid"
	RefusedExpired       = "expired"
)

// RefusedError is a pushed certificate refused, with one of the reasons
// above.
type RefusedError struct {
	Reason string
	Detail string
}

func (e *RefusedError) Error() string { return "certificate refused: " + e.Reason + ": " + e.Detail }

// Refusal gives the reason and detail (the management API reads them
// through this method, without importing this package).
func (e *RefusedError) Refusal() (reason, detail string) { return e.Reason, e.Detail }

func refused(reason, format string, args ...any) *RefusedError {
	return &RefusedError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Validate checks a certificate chain and its key as the NOC pushes them
// (PEM): the leaf parses, the key parses and is the leaf's, and the leaf
// is valid at now. The error is a *RefusedError.
func Validate(certPEM, keyPEM []byte, now time.Time) (tls.Certificate, error) {
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return tls.Certificate{}, refused(RefusedNoCertificate, "no PEM CERTIFICATE block in the certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, refused(RefusedCertificate, "%v", err)
	}
	for i, der := range chain[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return tls.Certificate{}, refused(RefusedCertificate, "chain certificate %d: %v", i+2, err)
		}
	}
	var kb *pem.Block
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" || b.Type == "EC PRIVATE KEY" || b.Type == "RSA PRIVATE KEY" {
			kb = b
			break
		}
	}
	if kb == nil {
		return tls.Certificate{}, refused(RefusedNoKey, "no PEM PRIVATE KEY block in the key")
	}
	key, err := parseKey(kb)
	if err != nil {
		return tls.Certificate{}, refused(RefusedKey, "%v", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, refused(RefusedKeyMismatch, "the key is not the certificate's (certificate for %q)", leaf.Subject.CommonName)
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, refused(RefusedNotYetValid, "valid from %s, the box's time is %s", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, refused(RefusedExpired, "expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func parseKey(b *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// Holder is the certificate the box serves now: the NOC's pushed one if
// there is a valid one in the state directory, else the one made at
// first boot. The status page and the management API read it on every
// handshake (GetCertificate), so a pushed certificate is served at once.
type Holder struct {
	dir    string
	cur    atomic.Pointer[tls.Certificate]
	pushed atomic.Bool
}

// Open returns the holder of dir ("" keeps everything in memory). A
// pushed certificate that no longer validates (expired while the box was
// off, a damaged file) is set aside with its reason, and the first-boot
// certificate is served: the box stays reachable.
func Open(dir, host string, now time.Time) (h *Holder, setAside error, err error) {
	h = &Holder{dir: dir}
	if dir != "" {
		data, rerr := os.ReadFile(filepath.Join(dir, pushedFile))
		switch {
		case rerr == nil:
			c, verr := Validate(data, data, now)
			if verr == nil {
				h.cur.Store(&c)
				h.pushed.Store(true)
				return h, nil, nil
			}
			setAside = fmt.Errorf("the NOC's certificate %s: %w", filepath.Join(dir, pushedFile), verr)
		case !errors.Is(rerr, os.ErrNotExist):
			setAside = fmt.Errorf("the NOC's certificate: %w", rerr)
		}
	}
	c, err := LoadOrCreate(dir, host, now)
	if err != nil {
		return nil, setAside, err
	}
	h.cur.Store(&c)
	return h, setAside, nil
}

// Current is the certificate served now.
func (h *Holder) Current() tls.Certificate { return *h.cur.Load() }

// Pushed says whether the current certificate is the NOC's.
func (h *Holder) Pushed() bool { return h.pushed.Load() }

// GetCertificate serves the current certificate (tls.Config).
func (h *Holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cur.Load(), nil
}

// Install validates a pushed certificate and key, stores them (one file,
// mode 0600, replaced atomically) and serves them from the next
// handshake on. A refused one changes nothing.
func (h *Holder) Install(certPEM, keyPEM []byte, now time.Time) (tls.Certificate, error) {
	c, err := Validate(certPEM, keyPEM, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	if h.dir != "" {
		// The key first and the certificate after it: Open reads both
		// from the one file.
		var data bytes.Buffer
		data.Write(bytes.TrimSpace(keyPEM))
		data.WriteByte('\n')
		data.Write(bytes.TrimSpace(certPEM))
		data.WriteByte('\n')
		if err := os.MkdirAll(h.dir, 0o700); err != nil {
			return tls.Certificate{}, fmt.Errorf("store the NOC's certificate: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(h.dir, pushedFile), data.Bytes(), 0o600); err != nil {
			return tls.Certificate{}, fmt.Errorf("store the NOC's certificate: %w", err)
		}
	}
	h.cur.Store(&c)
	h.pushed.Store(true)
	return c, nil
}
