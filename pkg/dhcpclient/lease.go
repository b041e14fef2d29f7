package dhcpclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"passerelle/pkg/atomicfile"
)

// Lease is an address granted by a DHCP server.
type Lease struct {
	Address  netip.Prefix  `json:"address"`           // our address with the subnet's length
	Gateway  netip.Addr    `json:"gateway,omitzero"`  // first router; zero if the server gave none
	Server   netip.Addr    `json:"server"`            // server identifier: where renewals go
	DNS      []netip.Addr  `json:"dns,omitempty"`     // resolvers offered (informational)
	Acquired time.Time     `json:"acquired"`          // when the request that got the ACK was sent
	Duration time.Duration `json:"duration"`          // lease time
	T1       time.Duration `json:"t1"`                // renewal time, from Acquired
	T2       time.Duration `json:"t2"`                // rebinding time, from Acquired
	Released bool          `json:"released,omitzero"` // given back on shutdown: ask for it again, do not assume it
}

// Expiry is when the lease ends unless renewed.
func (l *Lease) Expiry() time.Time { return l.Acquired.Add(l.Duration) }

// RenewAt is T1 as a time.
func (l *Lease) RenewAt() time.Time { return l.Acquired.Add(l.T1) }

// RebindAt is T2 as a time.
func (l *Lease) RebindAt() time.Time { return l.Acquired.Add(l.T2) }

// SameBinding reports whether two leases grant the same configuration (address,
// gateway, server), whatever their times.
func (l *Lease) SameBinding(o *Lease) bool {
	if l == nil || o == nil {
		return l == o
	}
	return l.Address == o.Address && l.Gateway == o.Gateway && l.Server == o.Server
}

func (l *Lease) String() string {
	if l == nil {
		return "no lease"
	}
	s := fmt.Sprintf("%s from %s for %s", l.Address, l.Server, l.Duration)
	if l.Gateway.IsValid() {
		s += " via " + l.Gateway.String()
	}
	return s
}

// check validates a lease read from disk: the file may be damaged or
// written by another version.
func (l *Lease) check() error {
	switch {
	case !l.Address.IsValid() || !l.Address.Addr().Is4():
		return fmt.Errorf("address %v is not an IPv4 prefix", l.Address)
	case l.Gateway.IsValid() && !l.Gateway.Is4():
		return fmt.Errorf("gateway %v is not IPv4", l.Gateway)
	case !l.Server.Is4():
		return fmt.Errorf("server %v is not IPv4", l.Server)
	case l.Duration <= 0 || l.T1 <= 0 || l.T1 > l.T2 || l.T2 > l.Duration:
		return fmt.Errorf("inconsistent times: lease %s, T1 %s, T2 %s", l.Duration, l.T1, l.T2)
	case l.Acquired.IsZero():
		return errors.New("no acquisition time")
	}
	return nil
}

// loadLease reads the lease kept at path. A missing file is (nil, nil): the
// first boot, or a lease the server refused.
func loadLease(path string) (*Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lease: %w", err)
	}
	var l Lease
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("lease file %s: %w", path, err)
	}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("lease file %s: %w", path, err)
	}
	return &l, nil
}

// saveLease writes the lease atomically: a reboot in the middle leaves the
// old file or the new one, never a torn one.
func saveLease(path string, l *Lease) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lease: %w", err)
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

func removeLease(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove lease: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
