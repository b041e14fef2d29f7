package boxcert

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"passerelle/pkg/atomicfile"
)

// The NOC side: a box's certificate is self-signed, so no authority
// vouches for it; the NOC accepts a box whose certificate has the SHA-256
// fingerprint it expects: pinned (the inventory's fingerprint column,
// passerellectl --fingerprint), else the one it saw the first time
// (trust on first use, kept in a known-boxes file like SSH's
// known_hosts). A changed fingerprint is refused.

// Transport is an HTTP transport whose TLS connections are kept only if
// check accepts the fingerprint of the certificate the server at addr
// (host:port, as dialled) presented. The handshake still proves that
// the server holds the certificate's key; names and dates are not
// checked: the fingerprint is the identity.
func Transport(check func(addr, fingerprint string) error) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := tls.Dialer{
				NetDialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
				Config: &tls.Config{
					MinVersion: tls.VersionTLS12,
					// No authority to ask: VerifyConnection, which runs
					// in any case, compares the fingerprint instead.
					InsecureSkipVerify: true,
					VerifyConnection: func(cs tls.ConnectionState) error {
						if len(cs.PeerCertificates) == 0 {
							return fmt.Errorf("box at %s presented no certificate", addr)
						}
						return check(addr, FingerprintDER(cs.PeerCertificates[0].Raw))
					},
				},
			}
			return d.DialContext(ctx, network, addr)
		},
		// As http.DefaultTransport: a rollout talks to thousands of
		// boxes once each; keeping every connection would hold a
		// descriptor and TLS buffers per box on both sides (a 10,000-box
		// push ran out of descriptors and grew to 480 MiB).
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 30 * time.Second,
	}
}

// Pins is the NOC's trust in boxes for one run.
type Pins struct {
	// Pinned are the expected fingerprints by address (host:port).
	Pinned map[string]string
	// Names name the boxes in errors (their UAI), by address.
	Names map[string]string
	// Known decides for boxes that are not pinned (trust on first use);
	// nil: an unpinned box is refused.
	Known *KnownBoxes
}

// Check accepts the certificate of the box at addr if its fingerprint is
// the pinned one, or the known one, or (first use) the box is new.
func (p *Pins) Check(addr, fingerprint string) error {
	name := p.Names[addr]
	if want, ok := p.Pinned[addr]; ok {
		if want != fingerprint {
			return &MismatchError{Box: name, Addr: addr, Want: want, Got: fingerprint, Pinned: true}
		}
		return nil
	}
	if p.Known == nil {
		return fmt.Errorf("box %s: no fingerprint pinned and no known-boxes file: refused", boxName(name, addr))
	}
	return p.Known.Check(addr, name, fingerprint)
}

// MismatchError is a box whose certificate is not the one expected.
type MismatchError struct {
	Box, Addr string
	Want, Got string
	Pinned    bool   // Want was pinned (else known from an earlier use)
	File      string // the known-boxes file, when Want came from it
}

func (e *MismatchError) Error() string {
	if e.Pinned {
		return fmt.Sprintf("box %s: certificate fingerprint %s is not the pinned %s: refused", boxName(e.Box, e.Addr), e.Got, e.Want)
	}
	return fmt.Sprintf("box %s: certificate fingerprint changed: known %s, now %s: refused "+
		"(if the box's certificate was replaced on purpose, pin the new one or remove the box's line from %s)",
		boxName(e.Box, e.Addr), e.Want, e.Got, e.File)
}

func boxName(name, addr string) string {
	if name == "" {
		return "at " + addr
	}
	return name + " at " + addr
}

// KnownBoxes is the known-boxes file: one line per box, its management
// API's address, the SHA-256 fingerprint first seen there and, for
// people, the box's UAI:
//
//	100.64.0.7:8443 AB:CD:...:EF 0599999Y
//
// Boxes seen for the first time are kept in memory until Save.
type KnownBoxes struct {
	path string

	mu       sync.Mutex
	known    map[string]knownBox // by address
	added    map[string]knownBox // first seen since Open, not saved yet
	replaced map[string]replaced // certificates the NOC changed since Open, not saved yet
}

// replaced is a box whose certificate this run replaced (passerellectl
// cert push): old is the fingerprint trusted before.
type replaced struct {
	knownBox
	old string
}

type knownBox struct{ fingerprint, name string }

// DefaultKnownBoxes is the known-boxes file of the user running
// passerellectl: <user config dir>/passerelle/known_boxes.
func DefaultKnownBoxes() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no place for the known-boxes file (give --known-boxes): %w", err)
	}
	return filepath.Join(dir, "passerelle", "known_boxes"), nil
}

// OpenKnownBoxes reads the file at path; a missing file is an empty one.
func OpenKnownBoxes(path string) (*KnownBoxes, error) {
	k := &KnownBoxes{path: path, added: map[string]knownBox{}, replaced: map[string]replaced{}}
	m, err := readKnown(path)
	if err != nil {
		return nil, err
	}
	k.known = m
	return k, nil
}

// Path is the file's path.
func (k *KnownBoxes) Path() string { return k.path }

func readKnown(path string) (map[string]knownBox, error) {
	m := map[string]knownBox{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known boxes: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("%s:%d: expected ADDRESS FINGERPRINT [UAI], got %q", path, n, line)
		}
		if _, _, err := net.SplitHostPort(f[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: address %q: %v", path, n, f[0], err)
		}
		fp, err := ParseFingerprint(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if _, dup := m[f[0]]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", path, n, f[0])
		}
		e := knownBox{fingerprint: fp}
		if len(f) == 3 {
			e.name = f[2]
		}
		m[f[0]] = e
	}
	return m, sc.Err()
}

// Check accepts the box at addr if it presents the fingerprint known for
// that address, or if the address is new (it is then trusted from now
// on and written by Save).
func (k *KnownBoxes) Check(addr, name, fingerprint string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.known[addr]
	if !ok {
		e, ok = k.added[addr]
	}
	if !ok {
		k.added[addr] = knownBox{fingerprint: fingerprint, name: name}
		return nil
	}
	if e.fingerprint != fingerprint {
		if name == "" {
			name = e.name
		}
		return &MismatchError{Box: name, Addr: addr, Want: e.fingerprint, Got: fingerprint, File: k.path}
	}
	return nil
}

// Replace trusts fingerprint at addr instead of old: the NOC itself gave
// the box that certificate over a connection checked against old (the
// box is then refused with any other, old included). Save writes it
// unless the file meanwhile holds another fingerprint than old.
func (k *KnownBoxes) Replace(addr, name, old, fingerprint string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.added, addr)
	k.replaced[addr] = replaced{knownBox{fingerprint: fingerprint, name: name}, old}
	k.known[addr] = knownBox{fingerprint: fingerprint, name: name}
}

// Added is how many boxes were trusted for the first time since Open.
func (k *KnownBoxes) Added() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.added)
}

// Save writes the boxes first seen since Open into the file, atomically
// (temporary file, fsync, rename): the file is read again first, so a
// run in parallel loses nothing; if that run saw another certificate at
// the same address, the file's entry is kept and Save says so.
func (k *KnownBoxes) Save() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.added) == 0 && len(k.replaced) == 0 {
		return nil
	}
	m, err := readKnown(k.path)
	if err != nil {
		return err
	}
	var conflicts []string
	for addr, r := range k.replaced {
		if cur, ok := m[addr]; ok && cur.fingerprint != r.old && cur.fingerprint != r.fingerprint {
			conflicts = append(conflicts, fmt.Sprintf("%s: %s kept, %s not", addr, cur.fingerprint, r.fingerprint))
			continue
		}
		m[addr] = r.knownBox
	}
	for addr, e := range k.added {
		if old, ok := m[addr]; ok {
			if old.fingerprint != e.fingerprint {
				conflicts = append(conflicts, fmt.Sprintf("%s: %s kept, %s not", addr, old.fingerprint, e.fingerprint))
			}
			continue
		}
		m[addr] = e
	}
	addrs := make([]string, 0, len(m))
	for a := range m {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	var b bytes.Buffer
	b.WriteString("# passerellectl known boxes: management API address, SHA-256 fingerprint of its certificate, UAI\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s %s", a, m[a].fingerprint)
		if m[a].name != "" {
			fmt.Fprintf(&b, " %s", m[a].name)
		}
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("known boxes: %w", err)
	}
	if err := atomicfile.Write(k.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("known boxes: %w", err)
	}
	k.known, k.added, k.replaced = m, map[string]knownBox{}, map[string]replaced{}
	if len(conflicts) > 0 {
		slices.Sort(conflicts)
		return fmt.Errorf("known boxes %s: another run saw other certificates at %s", k.path, strings.Join(conflicts, "; "))
	}
	return nil
}
