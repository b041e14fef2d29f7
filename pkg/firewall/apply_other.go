//go:build !linux

package firewall

import (
	"errors"
	"io"
	"net/netip"
)

// The firewall is Linux-only; elsewhere (a NOC workstation running
// passerellectl) plans compile and print, and applying fails.

var errNotLinux = errors.New("nftables needs Linux")

type kernel struct{}

func (f *Firewall) replace(*Plan) (int, error)             { return 0, errNotLinux }
func (f *Firewall) replaceBlocked(_, _ []netip.Addr) error { return errNotLinux }
func (f *Firewall) Counters() ([]CounterValue, error)      { return nil, errNotLinux }

// Show fails: there is no live table to read.
func Show(io.Writer) error { return errNotLinux }

// Show fails: there is no live table to read.
func (f *Firewall) Show(io.Writer) error { return errNotLinux }
