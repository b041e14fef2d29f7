package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// DHCPSpec makes an ISP hand the box its uplink address by DHCP, as ADSL
// and 4G routers do, instead of the box configuring it statically. The
// uplink's BoxAddr is then the address first offered, and Gateway the
// ISP's address, router and DHCP server.
type DHCPSpec struct {
	// LeaseTime is the lease granted (default DefaultDHCPLeaseTime).
	// Tests shorten it to see renewals; DHCPServer.SetLeaseTime changes
	// it while the lab runs.
	LeaseTime time.Duration
}

// DefaultDHCPLeaseTime is the lease of the lab's ISP DHCP servers unless
// the spec or the test says otherwise.
const DefaultDHCPLeaseTime = time.Hour

// dhcpLabPrefix is where SpecFromConfig puts the DHCP uplinks: uplink n
// gets 100.64.(n+1).0/24 (shared address space, as 4G operators use),
// the ISP .1 and the box .10 first.
var dhcpLabPrefix = netip.MustParsePrefix("100.64.0.0/16")

// DHCPExchange is one request the ISP's DHCP server answered.
type DHCPExchange struct {
	Time     time.Time
	Request  dhcpv4.MessageType // DISCOVER, REQUEST, RELEASE...
	Reply    dhcpv4.MessageType // OFFER, ACK, NAK; MessageTypeNone for none
	Address  netip.Addr         // offered, acknowledged or released
	Renewing bool               // a REQUEST from a bound client (ciaddr set)
}

// DHCPServer is the DHCP server of one ISP namespace. It serves one client
// (the box): it offers one address and acknowledges only that one, so a
// test that changes the address sees the box's renewal refused (NAK) and
// the box discover the new one, as when an ISP renumbers.
type DHCPServer struct {
	uplink string
	server netip.Addr // the ISP's address: server identifier and router
	bits   int
	srv    *server4.Server
	done   chan struct{}

	mu        sync.Mutex
	lease     time.Duration
	addr      netip.Addr
	exchanges []DHCPExchange
}

// startDHCP serves DHCP on the ISP side of the box's uplink.
func startDHCP(nsName string, u UplinkSpec) (*DHCPServer, error) {
	s := &DHCPServer{
		uplink: u.Name,
		server: u.Gateway,
		bits:   u.BoxAddr.Bits(),
		lease:  u.DHCP.LeaseTime,
		addr:   u.BoxAddr.Addr(),
		done:   make(chan struct{}),
	}
	if s.lease <= 0 {
		s.lease = DefaultDHCPLeaseTime
	}
	var conn *net.UDPConn
	err := RunInNamespace(nsName, func() error {
		var err error
		conn, err = server4.NewIPv4UDPConn(ispBoxLink, &net.UDPAddr{Port: dhcpv4.ServerPort})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp server for %s: %w", u.Name, err)
	}
	srv, err := server4.NewServer("", nil, s.handle, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp server for %s: %w", u.Name, err)
	}
	s.srv = srv
	go func() {
		defer close(s.done)
		_ = srv.Serve() // returns when closed
	}()
	return s, nil
}

func (s *DHCPServer) stop() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// SetLeaseTime changes the lease granted from the next exchange on.
func (s *DHCPServer) SetLeaseTime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lease = d
}

// SetAddress makes the server offer a (inside the uplink's subnet) from
// now on and refuse the old one at the next renewal.
func (s *DHCPServer) SetAddress(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addr = a
}

// Address returns the address the server currently grants.
func (s *DHCPServer) Address() netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Exchanges returns what the server answered so far, oldest first.
func (s *DHCPServer) Exchanges() []DHCPExchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DHCPExchange(nil), s.exchanges...)
}

func (s *DHCPServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := DHCPExchange{Time: time.Now(), Request: m.MessageType(), Reply: dhcpv4.MessageTypeNone}
	defer func() { s.exchanges = append(s.exchanges, ex) }()
	ciaddr, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
	ex.Renewing = ciaddr.IsValid() && !ciaddr.IsUnspecified()
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ, ex.Address = dhcpv4.MessageTypeOffer, s.addr
	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(s.server.AsSlice()) {
			return // the client chose another server
		}
		asked, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
		if ex.Renewing {
			asked = ciaddr
		}
		typ, ex.Address = dhcpv4.MessageTypeAck, asked
		if asked != s.addr {
			typ = dhcpv4.MessageTypeNak
		}
	case dhcpv4.MessageTypeRelease:
		ex.Address = ciaddr
		return
	default:
		return
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.server.AsSlice())),
	}
	if typ != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(ex.Address.AsSlice()),
			dhcpv4.WithNetmask(net.CIDRMask(s.bits, 32)),
			dhcpv4.WithRouter(s.server.AsSlice()),
			dhcpv4.WithDNS(internetServerAddr.AsSlice()),
			dhcpv4.WithLeaseTime(uint32(s.lease/time.Second)),
		)
	}
	reply, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	// A client without an address gets broadcasts; a renewing one, unicasts.
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	if ex.Renewing && typ != dhcpv4.MessageTypeNak {
		dst.IP = ciaddr.AsSlice()
	}
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err == nil {
		ex.Reply = typ
	}
}

// DHCPServer returns the DHCP server of a DHCP uplink's ISP, or nil.
func (l *Lab) DHCPServer(uplink string) *DHCPServer { return l.dhcp[uplink] }

// startDHCPServers starts the ISP DHCP servers of the spec's DHCP uplinks.
func (l *Lab) startDHCPServers() error {
	for _, u := range l.plan.spec.Uplinks {
		if u.DHCP == nil {
			continue
		}
		s, err := startDHCP(l.Namespace(RoleISP(u.Name)), u)
		if err != nil {
			return err
		}
		if l.dhcp == nil {
			l.dhcp = map[string]*DHCPServer{}
		}
		l.dhcp[u.Name] = s
	}
	return nil
}

func (l *Lab) stopDHCPServers() error {
	var errs []error
	for _, s := range l.dhcp {
		if err := s.stop(); err != nil {
			errs = append(errs, fmt.Errorf("dhcp server for %s: %w", s.uplink, err))
		}
	}
	return errors.Join(errs...)
}

// dhcpUplinkSpec is the lab side of a config's DHCP uplink number n.
func dhcpUplinkSpec(n int, name, ifname string) UplinkSpec {
	base := dhcpLabPrefix.Addr().As4()
	base[2] = byte(n + 1)
	subnet := netip.PrefixFrom(netip.AddrFrom4(base), 24)
	return UplinkSpec{
		Name:      name,
		Interface: ifname,
		BoxAddr:   netip.PrefixFrom(offset(subnet.Addr(), 10), 24),
		Gateway:   offset(subnet.Addr(), 1),
		DHCP:      &DHCPSpec{},
	}
}
