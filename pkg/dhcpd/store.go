package dhcpd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"passerelle/pkg/atomicfile"
)

// fileVersion is the format of lease files; a file of another version is
// not read (it is set aside, like a corrupt one).
const fileVersion = 1

// store keeps one zone's encoded leases.
type store interface {
	Load() ([]byte, error) // nil, nil when nothing was stored yet
	Save(data []byte) error
}

type leaseFile struct {
	Version int         `json:"version"`
	Zone    string      `json:"zone"`
	Leases  []fileLease `json:"leases"`
}

type fileLease struct {
	Address  string    `json:"address"`
	MAC      string    `json:"mac,omitempty"`
	Hostname string    `json:"hostname,omitempty"`
	Expires  time.Time `json:"expires"`
	Declined bool      `json:"declined,omitempty"`
}

func sortLeases(ls []lease) {
	slices.SortFunc(ls, func(a, b lease) int { return a.Addr.Compare(b.Addr) })
}

// encodeLeases renders a zone's records as the lease file.
func encodeLeases(zone string, ls []lease) ([]byte, error) {
	// One lease per line: readable, and much cheaper than indenting the
	// whole document.
	z, err := json.Marshal(zone)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 64+len(ls)*110)
	b = fmt.Appendf(b, "{\"version\":%d,\"zone\":%s,\"leases\":[", fileVersion, z)
	for i, l := range ls {
		fl := fileLease{Address: l.Addr.String(), Hostname: l.Hostname, Expires: l.Expiry.UTC(), Declined: l.Declined}
		if !l.Declined {
			fl.MAC = net.HardwareAddr(l.MAC[:]).String()
		}
		line, err := json.Marshal(fl)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n  "...)
		b = append(b, line...)
	}
	return append(b, "\n]}\n"...), nil
}

// decodeLeases parses a lease file strictly. Entries that do not parse are
// an error: a file this firmware did not write is not trusted in part.
func decodeLeases(zone string, data []byte) ([]lease, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f leaseFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode: trailing data after the leases")
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("version %d, this firmware reads %d", f.Version, fileVersion)
	}
	if f.Zone != zone {
		return nil, fmt.Errorf("file is for zone %q", f.Zone)
	}
	out := make([]lease, 0, len(f.Leases))
	for i, fl := range f.Leases {
		a, err := netip.ParseAddr(fl.Address)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("leases[%d].address: %q is not an IPv4 address", i, fl.Address)
		}
		l := lease{Addr: a, Hostname: cleanHostname(fl.Hostname), Expiry: fl.Expires, Declined: fl.Declined}
		if !fl.Declined {
			hw, err := net.ParseMAC(fl.MAC)
			if err != nil || len(hw) != 6 {
				return nil, fmt.Errorf("leases[%d].mac: %q is not an Ethernet address", i, fl.MAC)
			}
			copy(l.MAC[:], hw)
		}
		out = append(out, l)
	}
	return out, nil
}

// Lease files hold personal data (hardware addresses, host names such as
// "iPhone-de-Lea"): readable by root only, in a directory of root's
// (docs/privacy.md).
const (
	leaseFileMode = 0o600
	leaseDirMode  = 0o700
)

// fileStore keeps leases in one file, replaced atomically: a crash at any
// point leaves either the old or the new file, never a mix.
type fileStore struct {
	path string
}

// Load reads the file, first closing it (and its directory) to others if
// an earlier firmware left them readable.
func (s fileStore) Load() ([]byte, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		restrict(s.path, leaseFileMode)
		restrict(filepath.Dir(s.path), leaseDirMode)
	}
	return b, err
}

func (s fileStore) Save(data []byte) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, leaseDirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	restrict(dir, leaseDirMode)
	return atomicfile.Write(s.path, data, leaseFileMode)
}

// restrict removes the permissions of path beyond mode.
func restrict(path string, mode os.FileMode) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&^mode != 0 {
		os.Chmod(path, fi.Mode().Perm()&mode)
	}
}

// setAside renames an unreadable lease file so that it is kept for
// inspection and not overwritten.
func (s fileStore) setAside(now time.Time) (string, error) {
	dst := fmt.Sprintf("%s.bad-%s", s.path, now.UTC().Format("20060102T150405Z"))
	return dst, os.Rename(s.path, dst)
}

// memStore keeps leases in memory, for tests and the fuzz target.
type memStore struct {
	data  []byte
	saves int
	bytes int // written in all
}

func (m *memStore) Load() ([]byte, error) { return m.data, nil }

func (m *memStore) Save(data []byte) error {
	m.data = append([]byte(nil), data...)
	m.saves++
	m.bytes += len(data)
	return nil
}

// cleanHostname keeps a client's host name only if it is a plain DNS
// label-ish string: it ends up in logs and, later, in the local DNS zone.
func cleanHostname(s string) string {
	if len(s) > 63 {
		s = s[:63]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if !ok {
			return ""
		}
	}
	return s
}
