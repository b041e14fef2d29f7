// Package dhcpclient is the DHCP client of the box's DHCP uplinks (ADSL and
// 4G routers, some ISP boxes): RFC 2131's state machine on
// github.com/insomniacslk/dhcp messages, with renewal at T1, rebinding at
// T2, expiry, NAK handling, release on shutdown, and the lease kept in a
// file so that after a reboot the box asks for the same address
// (INIT-REBOOT).
//
// The client configures nothing itself: it reports leases to its owner (the
// uplink manager), which sets the address and routes.
package dhcpclient

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// DefaultLeaseDir is where leases are kept across reboots: /perm is the
// box's persistent partition.
const DefaultLeaseDir = "/perm/uplink"

// DefaultLeaseFile is the lease file of an uplink when the config names
// none.
func DefaultLeaseFile(uplink string) string {
	return filepath.Join(DefaultLeaseDir, uplink+".lease")
}

// Incoming is a message received by a transport, with its sender.
type Incoming struct {
	Msg  *dhcpv4.DHCPv4
	From netip.Addr
}

// Transport moves DHCP messages on one interface.
type Transport interface {
	// Send transmits msg to a server (to) from our address (from), or
	// broadcasts it when to is the zero Addr.
	Send(msg *dhcpv4.DHCPv4, to, from netip.Addr) error
	// Messages delivers received messages; it is closed by Close.
	Messages() <-chan Incoming
	Close() error
}

// Config describes one client.
type Config struct {
	Interface string // the uplink's interface, e.g. wan1
	LeaseFile string // where the lease is kept; DefaultLeaseFile(uplink) on the box
	// Mark is the SO_MARK of unicasts to the server, so they leave
	// through this uplink even when it is not the active one.
	Mark uint32
	// OnLease is called from Run's goroutine whenever the lease in
	// effect changes: new is nil when the lease is lost. old and new may
	// differ only in their times (a renewal).
	OnLease func(old, new *Lease)
	Log     *slog.Logger
	Now     func() time.Time // the clock; time.Now when nil
	// Open opens the transport; nil uses the Linux one on Interface.
	// It is called again (every few seconds) while it fails: a USB modem
	// may appear after boot.
	Open func() (Transport, net.HardwareAddr, error)
}

// Client runs the DHCP exchange of one interface.
type Client struct {
	cfg Config

	mu    sync.Mutex
	state State
	lease *Lease
}

// New checks the config and returns a client; Run starts it.
func New(cfg Config) (*Client, error) {
	if cfg.Interface == "" {
		return nil, errors.New("dhcp client: no interface")
	}
	if cfg.LeaseFile == "" || !filepath.IsAbs(cfg.LeaseFile) {
		return nil, fmt.Errorf("dhcp client %s: lease file %q must be an absolute path", cfg.Interface, cfg.LeaseFile)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnLease == nil {
		cfg.OnLease = func(_, _ *Lease) {}
	}
	if cfg.Open == nil {
		ifc, mark := cfg.Interface, cfg.Mark
		cfg.Open = func() (Transport, net.HardwareAddr, error) { return openInterface(ifc, mark) }
	}
	return &Client{cfg: cfg}, nil
}

// Lease returns the lease in effect, or nil.
func (c *Client) Lease() *Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease == nil {
		return nil
	}
	l := *c.lease
	return &l
}

// State returns where the client is in the protocol.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// reopenDelay spaces attempts to open a missing interface.
const reopenDelay = 3 * time.Second

// Run runs the client until ctx is done, then releases the lease (the
// lease file keeps its address for the next start) and returns nil.
func (c *Client) Run(ctx context.Context) error {
	log := c.cfg.Log
	var (
		tr  Transport
		hw  net.HardwareAddr
		err error
	)
	for {
		tr, hw, err = c.cfg.Open()
		if err == nil {
			break
		}
		log.Warn("dhcp: cannot open the interface; retrying", "interface", c.cfg.Interface, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(reopenDelay):
		}
	}
	defer tr.Close()

	m := newMachine(hw, randomXID, randomJitter)
	kept, err := loadLease(c.cfg.LeaseFile)
	if err != nil {
		log.Warn("dhcp: ignoring the kept lease", "err", err)
		kept = nil
	}
	c.do(m, tr, m.start(c.cfg.Now(), kept))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(max(m.wake.Sub(c.cfg.Now()), 0))
		select {
		case <-ctx.Done():
			c.do(m, tr, m.stop())
			return nil
		case <-timer.C:
			c.do(m, tr, m.timer(c.cfg.Now()))
		case in, ok := <-tr.Messages():
			if !ok {
				return fmt.Errorf("dhcp %s: transport closed", c.cfg.Interface)
			}
			c.do(m, tr, m.receive(c.cfg.Now(), in.Msg, in.From))
		}
	}
}

// do carries out a step: send, persist, report.
func (c *Client) do(m *machine, tr Transport, s step) {
	log := c.cfg.Log.With("interface", c.cfg.Interface)
	for _, p := range s.send {
		if err := tr.Send(p.msg, p.to, p.from); err != nil {
			log.Warn("dhcp: send failed", "type", p.msg.MessageType(), "err", err)
		} else {
			log.Debug("dhcp: sent", "type", p.msg.MessageType(), "state", m.state, "to", p.to)
		}
	}
	if s.refused {
		if err := removeLease(c.cfg.LeaseFile); err != nil {
			log.Warn("dhcp: could not forget the refused lease", "err", err)
		}
	}
	if s.release != nil {
		if err := saveLease(c.cfg.LeaseFile, s.release); err != nil {
			log.Warn("dhcp: could not save the released lease", "err", err)
		}
	}
	if s.bound != nil {
		if err := saveLease(c.cfg.LeaseFile, s.bound); err != nil {
			log.Warn("dhcp: could not save the lease; a reboot will ask for a new one", "err", err)
		}
	}
	c.mu.Lock()
	old := c.lease
	c.state = m.state
	switch {
	case s.bound != nil:
		c.lease = s.bound
	case s.lost != "":
		c.lease = nil
	}
	cur := c.lease
	c.mu.Unlock()
	if s.lost != "" && old != nil && s.bound == nil {
		log.Info("dhcp: lease lost", "address", old.Address, "reason", s.lost)
	}
	if s.bound != nil {
		log.Info("dhcp: lease", "event", "dhcp-lease", "address", s.bound.Address, "gateway", s.bound.Gateway, "server", s.bound.Server,
			"lease", s.bound.Duration, "renew_in", s.bound.T1)
	}
	if old != cur {
		c.cfg.OnLease(old, cur)
	}
}

func randomXID() dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	_, _ = rand.Read(x[:]) // crypto/rand.Read never fails on Linux
	return x
}

func randomJitter() time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Duration(binary.LittleEndian.Uint64(b[:])%uint64(2*time.Second)) - time.Second
}
