package dhcpclient

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// State is where the client is in RFC 2131's state diagram (figure 5).
type State int

const (
	StateInit       State = iota // no lease, about to discover
	StateSelecting               // DISCOVER sent, waiting for an offer
	StateRequesting              // REQUEST for an offer sent, waiting for ACK or NAK
	StateRebooting               // INIT-REBOOT: asking to keep the lease kept across a restart
	StateBound                   // lease in effect, waiting for T1
	StateRenewing                // past T1: asking our server, by unicast
	StateRebinding               // past T2: asking any server, by broadcast
	StateStopped                 // released on shutdown
)

var stateNames = [...]string{"init", "selecting", "requesting", "rebooting", "bound", "renewing", "rebinding", "stopped"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Timing of retransmissions (RFC 2131 4.1 and 4.4.5).
const (
	firstRetransmit = 4 * time.Second  // then doubled, randomised by ±1 s
	maxRetransmit   = 64 * time.Second // the doubling stops here
	minRenewWait    = 60 * time.Second // RENEWING/REBINDING wait half the time left, at least this (never past the deadline)
	maxRequestTries = 4                // REQUESTs for one offer before discovering again
	maxRebootTries  = 2                // INIT-REBOOT REQUESTs before discovering again
	minLease        = 2 * time.Second  // shorter leases are stretched: timers below this would spin
	maxLease        = 365 * 24 * time.Hour
)

// outgoing is a message for the transport. A zero to broadcasts it from no
// address; a unicast goes from our leased address.
type outgoing struct {
	msg  *dhcpv4.DHCPv4
	to   netip.Addr
	from netip.Addr
}

// step is what one event made the machine decide.
type step struct {
	send    []outgoing
	bound   *Lease // a lease (new, renewed or changed) is now in effect
	lost    string // the lease in effect is gone, and why
	refused bool   // the server refused our address: forget it
	release *Lease // the lease was given back on shutdown
}

// machine is the client's state machine. It is pure: time comes in with
// every event and packets go out in the step, so tests can drive it through
// a whole lease life in microseconds.
type machine struct {
	hw     net.HardwareAddr
	newXID func() dhcpv4.TransactionID
	jitter func() time.Duration // uniform in [-1s, +1s] (RFC 2131 4.1)

	state  State
	xid    dhcpv4.TransactionID
	lease  *Lease         // in effect: BOUND, RENEWING, REBINDING
	offer  *dhcpv4.DHCPv4 // REQUESTING: the offer being requested
	reboot *Lease         // REBOOTING: the lease being confirmed
	want   netip.Addr     // address to ask for when discovering
	sentAt time.Time      // when the exchange started: lease times count from it
	tries  int            // transmissions in this exchange
	wake   time.Time      // when the timer event is due
}

func newMachine(hw net.HardwareAddr, newXID func() dhcpv4.TransactionID, jitter func() time.Duration) *machine {
	return &machine{hw: hw, newXID: newXID, jitter: jitter}
}

// start begins with the lease kept from the last run, if any: still valid
// and not released, it is confirmed with INIT-REBOOT; otherwise its
// address is asked for again in the DISCOVER.
func (m *machine) start(now time.Time, kept *Lease) step {
	var s step
	if kept != nil && !kept.Released && now.Before(kept.Expiry()) {
		m.reboot = kept
		m.state = StateRebooting
		m.xid = m.newXID()
		m.sentAt = now
		m.tries = 1
		s.send = append(s.send, outgoing{msg: m.rebootRequest()})
		m.wake = now.Add(m.backoff())
		return s
	}
	if kept != nil {
		m.want = kept.Address.Addr()
	}
	m.discover(now, &s)
	return s
}

func (m *machine) discover(now time.Time, s *step) {
	m.state = StateSelecting
	m.offer, m.reboot = nil, nil
	m.xid = m.newXID()
	m.sentAt = now
	m.tries = 1
	s.send = append(s.send, outgoing{msg: m.discoverMsg()})
	m.wake = now.Add(m.backoff())
}

// backoff is the wait after the m.tries-th transmission: 4 s, 8 s, ...
// 64 s, each ±1 s.
func (m *machine) backoff() time.Duration {
	d := firstRetransmit
	for i := 1; i < m.tries && d < maxRetransmit; i++ {
		d *= 2
	}
	return min(d, maxRetransmit) + m.jitter()
}

// renewWait is when to retransmit in RENEWING and REBINDING: half of the
// time left to deadline, at least a minute, and never past the deadline.
func renewWait(now, deadline time.Time) time.Time {
	left := deadline.Sub(now)
	w := left / 2
	if w < minRenewWait {
		w = min(minRenewWait, left)
	}
	return now.Add(w)
}

// timer handles the timer event; it does nothing before m.wake.
func (m *machine) timer(now time.Time) step {
	var s step
	if now.Before(m.wake) {
		return s
	}
	switch m.state {
	case StateSelecting:
		m.tries++
		s.send = append(s.send, outgoing{msg: m.discoverMsg()})
		m.wake = now.Add(m.backoff())
	case StateRequesting:
		if m.tries >= maxRequestTries {
			m.discover(now, &s)
			return s
		}
		m.tries++
		s.send = append(s.send, outgoing{msg: m.selectingRequest()})
		m.wake = now.Add(m.backoff())
	case StateRebooting:
		if m.tries >= maxRebootTries {
			m.want = m.reboot.Address.Addr()
			m.discover(now, &s)
			return s
		}
		m.tries++
		s.send = append(s.send, outgoing{msg: m.rebootRequest()})
		m.wake = now.Add(m.backoff())
	case StateBound, StateRenewing, StateRebinding:
		m.leaseTimer(now, &s)
	}
	return s
}

// leaseTimer moves a held lease along T1, T2 and expiry. It copes with
// several deadlines passing at once (a suspended or starved process).
func (m *machine) leaseTimer(now time.Time, s *step) {
	l := m.lease
	switch {
	case !now.Before(l.Expiry()):
		m.want = l.Address.Addr()
		m.lease = nil
		s.lost = "lease expired"
		m.discover(now, s)
	case !now.Before(l.RebindAt()):
		if m.state != StateRebinding {
			m.state = StateRebinding
			m.xid = m.newXID()
			m.sentAt = now
		}
		s.send = append(s.send, outgoing{msg: m.renewRequest(), from: l.Address.Addr()})
		m.wake = renewWait(now, l.Expiry())
	case !now.Before(l.RenewAt()):
		if m.state != StateRenewing {
			m.state = StateRenewing
			m.xid = m.newXID()
			m.sentAt = now
		}
		s.send = append(s.send, outgoing{msg: m.renewRequest(), to: l.Server, from: l.Address.Addr()})
		m.wake = renewWait(now, l.RebindAt())
	default:
		m.wake = l.RenewAt()
	}
}

// receive handles a message from the network; from is the sender's
// address as the transport saw it.
func (m *machine) receive(now time.Time, msg *dhcpv4.DHCPv4, from netip.Addr) step {
	var s step
	if msg.OpCode != dhcpv4.OpcodeBootReply || msg.TransactionID != m.xid || !bytes.Equal(msg.ClientHWAddr, m.hw) {
		return s // someone else's exchange, or a stale reply
	}
	typ := msg.MessageType()
	switch m.state {
	case StateSelecting:
		if typ != dhcpv4.MessageTypeOffer {
			return s
		}
		if a, ok := netip.AddrFromSlice(msg.YourIPAddr.To4()); !ok || !usableAddr(a) {
			return s
		}
		m.offer = msg
		m.state = StateRequesting
		m.sentAt = now
		m.tries = 1
		s.send = append(s.send, outgoing{msg: m.selectingRequest()})
		m.wake = now.Add(m.backoff())
	case StateRequesting, StateRebooting, StateRenewing, StateRebinding:
		switch typ {
		case dhcpv4.MessageTypeAck:
			l, err := leaseFromACK(msg, m.sentAt, from)
			if err != nil {
				return s // a broken ACK is no answer: the retransmission timer goes on
			}
			m.bind(l, &s)
		case dhcpv4.MessageTypeNak:
			if m.lease != nil {
				s.lost = "server refused the renewal (DHCPNAK)"
			}
			s.refused = true
			m.lease = nil
			m.want = netip.Addr{}
			m.discover(now, &s)
		}
	}
	return s
}

func (m *machine) bind(l *Lease, s *step) {
	m.state = StateBound
	m.lease = l
	m.offer, m.reboot = nil, nil
	m.tries = 0
	m.wake = l.RenewAt()
	s.bound = l
}

// stop gives a held lease back (DHCPRELEASE) and keeps its address as the
// one to ask for at the next start.
func (m *machine) stop() step {
	var s step
	if m.lease != nil {
		l := *m.lease
		l.Released = true
		s.send = append(s.send, outgoing{msg: m.releaseMsg(), to: l.Server, from: l.Address.Addr()})
		s.release = &l
		s.lost = "released on shutdown"
		m.lease = nil
	}
	m.state = StateStopped
	return s
}

// Messages. Each carries the current xid and our hardware address.

var requestedOptions = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask,
	dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue,
	dhcpv4.OptionRebindingTimeValue,
)

func (m *machine) newMsg(typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	mods = append([]dhcpv4.Modifier{
		dhcpv4.WithTransactionID(m.xid),
		dhcpv4.WithHwAddr(m.hw),
		dhcpv4.WithMessageType(typ),
	}, mods...)
	msg, err := dhcpv4.New(mods...)
	if err != nil {
		// New fails only when it cannot draw a random xid, and the xid
		// is always given here.
		panic(fmt.Sprintf("dhcpclient: build message: %v", err))
	}
	return msg
}

func (m *machine) discoverMsg() *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{requestedOptions}
	if m.want.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(m.want.AsSlice())))
	}
	return m.newMsg(dhcpv4.MessageTypeDiscover, mods...)
}

func (m *machine) selectingRequest() *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		requestedOptions,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(m.offer.YourIPAddr)),
	}
	if sid := m.offer.ServerIdentifier(); sid != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)))
	}
	return m.newMsg(dhcpv4.MessageTypeRequest, mods...)
}

func (m *machine) rebootRequest() *dhcpv4.DHCPv4 {
	return m.newMsg(dhcpv4.MessageTypeRequest, requestedOptions,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(m.reboot.Address.Addr().AsSlice())))
}

func (m *machine) renewRequest() *dhcpv4.DHCPv4 {
	return m.newMsg(dhcpv4.MessageTypeRequest, requestedOptions,
		dhcpv4.WithClientIP(m.lease.Address.Addr().AsSlice()), dhcpv4.WithBroadcast(false))
}

func (m *machine) releaseMsg() *dhcpv4.DHCPv4 {
	return m.newMsg(dhcpv4.MessageTypeRelease,
		dhcpv4.WithClientIP(m.lease.Address.Addr().AsSlice()),
		dhcpv4.WithBroadcast(false),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(m.lease.Server.AsSlice())))
}

// leaseFromACK validates an ACK and turns it into a lease that started at
// sentAt (RFC 2131 4.4.1: times count from the request). from is the
// packet's source, used when the server forgot its identifier.
func leaseFromACK(ack *dhcpv4.DHCPv4, sentAt time.Time, from netip.Addr) (*Lease, error) {
	addr, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !usableAddr(addr) {
		return nil, fmt.Errorf("ACK gives no usable address (yiaddr %v)", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.IP(addr.AsSlice()).DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 || ones < 8 {
		return nil, fmt.Errorf("ACK has an invalid subnet mask %v", mask)
	}
	l := &Lease{Address: netip.PrefixFrom(addr, ones), Acquired: sentAt}
	if sid, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok && usableAddr(sid) {
		l.Server = sid
	} else if from.Is4() && usableAddr(from) {
		l.Server = from
	} else {
		return nil, errors.New("ACK names no server")
	}
	for _, r := range ack.Router() {
		gw, ok := netip.AddrFromSlice(r.To4())
		// A router outside the subnet would need an on-link route; ISPs
		// do not do that, and a broken one must not become our gateway.
		if ok && usableAddr(gw) && gw != addr && l.Address.Contains(gw) {
			l.Gateway = gw
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok && usableAddr(a) {
			l.DNS = append(l.DNS, a)
		}
	}
	d := ack.IPAddressLeaseTime(0)
	if d <= 0 {
		return nil, errors.New("ACK has no lease time")
	}
	l.Duration = min(max(d, minLease), maxLease)
	l.T1 = ack.IPAddressRenewalTime(0)
	l.T2 = ack.IPAddressRebindingTime(0)
	if l.T2 <= 0 || l.T2 >= l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	if l.T1 <= 0 || l.T1 >= l.T2 {
		l.T1 = min(l.Duration/2, l.T2)
	}
	return l, nil
}

// usableAddr is a unicast IPv4 address a host can have or talk to.
func usableAddr(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
