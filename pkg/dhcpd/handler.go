package dhcpd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Ports of the protocol (RFC 2131).
const (
	serverPort = 67
	clientPort = 68
)

// minPacket is the fixed BOOTP header plus the magic cookie; maxPacket is
// what the listeners read (an Ethernet MTU).
const (
	minPacket = 240
	maxPacket = 1500
)

// exhaustLogEvery keeps a full pool from filling the log.
const exhaustLogEvery = time.Minute

// Reply is a message to send back and where to.
type Reply struct {
	Data []byte
	Dst  netip.AddrPort
}

var broadcastDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), clientPort)

// Handler answers the DHCP messages of one zone. It holds the zone's lease
// table and writes it to its store at most once per saveEvery (writeback).
// It is safe for concurrent use.
type Handler struct {
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	store store
	cfg   handlerConfig
	names *pseudonyms

	mu          sync.Mutex
	zone        ZonePlan
	t           *table
	lim         *limiter
	adm         *admission
	lastExhaust time.Time
	storeErr    error // last failed save, nil once a save succeeds
	// Writeback: dirty says the table changed since the last write,
	// lastSave when that write was, pending that a write is scheduled.
	dirty    bool
	lastSave time.Time
	pending  bool
	// changed, when set, is called after every change of the table (the
	// Server's LeasesVersion); alert when a flood of new clients starts
	// (the Server checks its health at once).
	changed func()
	alert   func()
}

// handlerConfig is what a zone's handler takes from the server's Options.
type handlerConfig struct {
	limits Limits
	budget Budget
	// saveEvery is the least time between two writes of the lease file;
	// zero writes at every change.
	saveEvery time.Duration
	// schedule runs f after d (time.AfterFunc); tests replace it.
	schedule func(d time.Duration, f func())
}

// newHandler returns the handler of a zone with the leases of st. A store
// that cannot be read or decoded does not stop the zone: the handler starts
// with what it could load, and problem says what happened.
func newHandler(log *slog.Logger, z ZonePlan, st store, m *metrics, cfg handlerConfig, now func() time.Time) (h *Handler, problem error) {
	if cfg.schedule == nil {
		cfg.schedule = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	h = &Handler{log: log, now: now, m: m, store: st, cfg: cfg, names: &pseudonyms{}, zone: z, t: newTable(z), lim: newLimiter(cfg.limits), adm: newAdmission(cfg.budget)}
	data, err := st.Load()
	switch {
	case err != nil:
		problem = fmt.Errorf("read leases: %w", err)
	case data != nil:
		ls, err := decodeLeases(z.Name, data)
		if err != nil {
			problem = fmt.Errorf("lease file unreadable, starting with no leases: %w", err)
			if fs, ok := st.(fileStore); ok {
				if dst, rerr := fs.setAside(now()); rerr == nil {
					problem = fmt.Errorf("%w (kept as %s)", problem, dst)
				}
			}
			break
		}
		t := now()
		if skipped := h.t.load(ls, t); skipped > 0 {
			log.Warn("leases dropped at load: outside the zone's pool, reserved for another device, or duplicates", "dropped", skipped, "kept", len(h.t.byAddr))
		}
		if n := h.t.prune(t); n > 0 {
			log.Info("lease records past their retention deleted", "deleted", n, "retention", recordRetention)
			h.write(t)
		}
		log.Info("leases loaded", "event", "dhcp-leases-loaded", "records", len(h.t.byAddr), "in_use", h.t.inUse(t))
	}
	return h, problem
}

// update installs a new plan of the same zone, keeping the leases it
// allows.
func (h *Handler) update(z ZonePlan) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.zone = z
	if h.t.setZone(z) {
		h.log.Info("leases dropped by the new configuration")
		h.save()
	}
}

// Handle processes one packet received on the zone's interface from src.
// It returns false when nothing is to be sent: dropped packets are counted
// by reason, never answered.
func (h *Handler) Handle(pkt []byte, src netip.AddrPort) (Reply, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	zone := h.zone.Name
	drop := func(reason string) (Reply, bool) {
		h.m.dropped.WithLabelValues(zone, reason).Inc()
		return Reply{}, false
	}
	if len(pkt) < minPacket || len(pkt) > maxPacket {
		return drop("bad_length")
	}
	// The per-client limit reads chaddr straight from the header, before
	// any parsing, so that a flood from one address costs neither the
	// parser's time nor the zone's budget.
	var mac [6]byte
	copy(mac[:], pkt[28:34])
	if !h.lim.allowClient(mac, now) {
		return drop("rate_limited")
	}
	if !h.lim.allowZone(now) {
		return drop("zone_rate_limited")
	}
	if src.Port() != clientPort {
		return drop("bad_source_port")
	}
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		return drop("malformed")
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return drop("not_a_request")
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return drop("bad_hardware_address")
	}
	if mac == ([6]byte{}) || mac[0]&1 != 0 { // zero, multicast or broadcast
		return drop("bad_hardware_address")
	}
	if !isZero(req.GatewayIPAddr) || req.HopCount != 0 {
		return drop("relayed")
	}
	if err := checkOptions(req); err != nil {
		return drop("bad_option")
	}
	ciaddr, ok := addr4(req.ClientIPAddr)
	if !ok {
		return drop("malformed")
	}
	requested, _ := addr4(req.RequestedIPAddress())
	serverID, _ := addr4(req.ServerIdentifier())
	if serverID.IsValid() && serverID != h.zone.Server && req.MessageType() != dhcpv4.MessageTypeRequest {
		return drop("for_another_server")
	}

	mt := req.MessageType()
	h.m.received.WithLabelValues(zone, mt.String()).Inc()
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		if !h.admit(mac, now) {
			return drop("new_client_budget")
		}
		a, ok := h.choose(mac, requested, now)
		if !ok {
			h.m.exhausted.WithLabelValues(zone).Inc()
			if now.Sub(h.lastExhaust) >= exhaustLogEvery {
				h.lastExhaust = now
				h.log.Warn("DHCP pool full: client gets no address", "pool", h.zone.PoolSize(), "in_use", h.t.inUse(now))
			}
			return drop("pool_exhausted")
		}
		h.t.offer(mac, a, now)
		return h.reply(req, dhcpv4.MessageTypeOffer, a, h.t.offerLease(mac, a))

	case dhcpv4.MessageTypeRequest:
		if serverID.IsValid() && serverID != h.zone.Server {
			// The client took another server's offer: ours is free again.
			h.t.dropOffer(mac)
			return drop("for_another_server")
		}
		var a netip.Addr
		switch {
		case requested.IsValid():
			a = requested // SELECTING or INIT-REBOOT
		case !serverID.IsValid() && ciaddr.IsValid():
			a = ciaddr // RENEWING or REBINDING
		default:
			return drop("bad_request")
		}
		if !h.zone.Subnet.Contains(a) {
			return h.nak(req, "address not on this network")
		}
		if !h.admit(mac, now) {
			return drop("new_client_budget")
		}
		l, err := h.t.bind(mac, a, cleanHostname(req.HostName()), now)
		if err != nil {
			return h.nak(req, err.Error())
		}
		h.save()
		h.log.Debug("lease", "mac", net.HardwareAddr(mac[:]).String(), "addr", a, "until", l.Expiry)
		return h.ack(req, a, l.Expiry.Sub(now))

	case dhcpv4.MessageTypeRelease:
		if !ciaddr.IsValid() {
			return drop("bad_request")
		}
		if h.t.release(mac, ciaddr, now) {
			h.save()
		}
		return Reply{}, false

	case dhcpv4.MessageTypeDecline:
		if !requested.IsValid() {
			return drop("bad_request")
		}
		if h.t.decline(mac, requested, now) {
			h.log.Warn("a client found its address in use by another host; address quarantined", "addr", requested, "client", h.names.of(now, mac))
			h.save()
		}
		return Reply{}, false

	case dhcpv4.MessageTypeInform:
		if !ciaddr.IsValid() || !h.zone.Subnet.Contains(ciaddr) {
			return drop("bad_request")
		}
		return h.reply(req, dhcpv4.MessageTypeAck, netip.Addr{}, 0)
	}
	return drop("unexpected_type")
}

// known reports whether mac is a client the zone has seen: a record (live
// or not), an offer, or a reservation.
func (h *Handler) known(mac [6]byte) bool {
	if _, ok := h.t.byMAC[mac]; ok {
		return true
	}
	if _, ok := h.t.offers[mac]; ok {
		return true
	}
	_, ok := h.t.reservedFor[mac]
	return ok
}

// admit applies the zone's new-client budget: known clients always pass.
func (h *Handler) admit(mac [6]byte, now time.Time) bool {
	if h.known(mac) {
		return true
	}
	ok, started := h.adm.admit(mac, now)
	if started {
		h.log.Warn("DHCP flood of new clients: new devices are served only when they retry", "budget_per_minute", h.cfg.budget.NewPerMinute, "burst", h.cfg.budget.NewBurst, "in_use", h.t.inUse(now), "pool", h.zone.PoolSize())
		if h.alert != nil {
			h.alert()
		}
	}
	return ok
}

// choose picks an address for mac (table.choose), counting the leases it
// reclaims for ARP silence.
func (h *Handler) choose(mac [6]byte, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	before := h.t.reclaimedSilent
	a, ok := h.t.choose(mac, requested, now)
	if n := h.t.reclaimedSilent - before; n > 0 {
		h.m.reclaimedSilent.WithLabelValues(h.zone.Name).Add(float64(n))
		h.log.Info("lease of an address that never answered ARP reclaimed for a new client", "addr", a)
		h.save()
	}
	return a, ok
}

// ack builds the ACK of a lease of d.
func (h *Handler) ack(req *dhcpv4.DHCPv4, a netip.Addr, d time.Duration) (Reply, bool) {
	return h.reply(req, dhcpv4.MessageTypeAck, a, d)
}

// checkOptions rejects options whose length is wrong for their type;
// the library's getters would silently read them as absent.
func checkOptions(req *dhcpv4.DHCPv4) error {
	mt := req.Options.Get(dhcpv4.OptionDHCPMessageType)
	if len(mt) != 1 {
		return errors.New("message type")
	}
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRequestedIPAddress, dhcpv4.OptionServerIdentifier} {
		if v := req.Options.Get(code); v != nil && len(v) != 4 {
			return fmt.Errorf("option %d: length %d", code.Code(), len(v))
		}
	}
	return nil
}

func isZero(ip net.IP) bool { return ip == nil || ip.Equal(net.IPv4zero) }

// addr4 converts a header or option address; the zero address and a
// missing one are both "not set".
func addr4(ip net.IP) (netip.Addr, bool) {
	if ip == nil {
		return netip.Addr{}, true
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}, false
	}
	if a.IsUnspecified() {
		return netip.Addr{}, true
	}
	return a, true
}

// reply builds an OFFER or ACK of a lease of d. yiaddr is unset and d zero
// for an INFORM's ACK, which carries no lease.
func (h *Handler) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr, d time.Duration) (Reply, bool) {
	z := &h.zone
	mask := net.CIDRMask(z.Subnet.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(z.Server))),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(ip(lastAddr(z.Subnet)))),
		dhcpv4.WithOption(dhcpv4.OptRouter(ip(z.Router))),
		dhcpv4.WithOption(dhcpv4.OptDNS(ips(z.DNS)...)),
	}
	if z.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(z.Domain)))
	}
	if len(z.NTP) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptNTPServers(ips(z.NTP)...)))
	}
	if d > 0 {
		d = d.Round(time.Second)
		mods = append(mods,
			dhcpv4.WithYourIP(ip(yiaddr)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(d)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(d/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(d*7/8)),
		)
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		h.m.dropped.WithLabelValues(z.Name, "reply_error").Inc()
		return Reply{}, false
	}
	h.m.replies.WithLabelValues(z.Name, mt.String()).Inc()
	// A client with an address gets a unicast reply; one without (or
	// asking for broadcast) a broadcast on the zone's interface, which
	// needs no ARP entry for an address the client does not have yet.
	dst := broadcastDst
	if ci, _ := addr4(req.ClientIPAddr); ci.IsValid() && !req.IsBroadcast() {
		dst = netip.AddrPortFrom(ci, clientPort)
	}
	return Reply{Data: resp.ToBytes(), Dst: dst}, true
}

func (h *Handler) nak(req *dhcpv4.DHCPv4, why string) (Reply, bool) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(h.zone.Server))),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
		dhcpv4.WithBroadcast(true),
	)
	if err != nil {
		h.m.dropped.WithLabelValues(h.zone.Name, "reply_error").Inc()
		return Reply{}, false
	}
	h.m.replies.WithLabelValues(h.zone.Name, dhcpv4.MessageTypeNak.String()).Inc()
	return Reply{Data: resp.ToBytes(), Dst: broadcastDst}, true
}

// save records a change of the table. The lease file is written at once
// if the last write is saveEvery old, else when it will be: a burst of
// lease events (a class arriving, a flood) costs one write per saveEvery,
// not one per ACK. What a power cut can lose, and why that is safe, is
// said in docs/privacy.md and on DefaultSaveEvery.
func (h *Handler) save() {
	if h.changed != nil {
		h.changed()
	}
	h.dirty = true
	now := h.now()
	wait := h.lastSave.Add(h.cfg.saveEvery).Sub(now)
	if wait <= 0 {
		h.write(now)
		return
	}
	if !h.pending {
		h.pending = true
		h.cfg.schedule(wait, h.Flush)
	}
}

// Flush writes the lease file if the table changed since the last write:
// at the end of a writeback delay, and at shutdown.
func (h *Handler) Flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = false
	if h.dirty {
		h.write(h.now())
	}
}

// write writes the zone's records. A failed write does not stop the
// replies: the school keeps getting addresses, and the failure is counted,
// logged and raised as a health warning by the Server; the next change
// tries again.
func (h *Handler) write(now time.Time) {
	h.lastSave = now
	data, err := encodeLeases(h.zone.Name, h.t.records())
	if err == nil {
		err = h.store.Save(data)
	}
	if err != nil {
		h.m.storeErrs.WithLabelValues(h.zone.Name).Inc()
		if h.storeErr == nil {
			h.log.Error("could not save the leases", "err", err)
		}
		h.storeErr = err
		return
	}
	h.m.storeBytes.WithLabelValues(h.zone.Name).Add(float64(len(data)))
	h.storeErr = nil
	h.dirty = false
}

// maintain does the zone's periodic work: expired offers are forgotten,
// records past their retention deleted.
func (h *Handler) maintain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.t.expireOffers(now)
	if n := h.t.prune(now); n > 0 {
		h.log.Info("lease records past their retention deleted", "deleted", n, "retention", recordRetention)
		h.save()
	}
	if h.dirty && !h.pending && now.Sub(h.lastSave) >= h.cfg.saveEvery {
		h.write(now) // a write that failed, tried again
	}
}

// flood reports whether a flood of new clients is going on.
func (h *Handler) flood() (since time.Time, refused int, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.adm.flooded(h.now())
}

// usage reports the pool's size and the addresses held in it now, and
// the live leases (reservations included).
func (h *Handler) usage() (pool, inUse, active int, storeErr error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.t.expireOffers(now)
	for _, l := range h.t.byAddr {
		if !l.Declined && l.live(now) {
			active++
		}
	}
	return h.zone.PoolSize(), h.t.inUse(now), active, h.storeErr
}

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = ip(a)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	return addrFrom(u32(p.Masked().Addr()) | ^uint32(0)>>p.Bits())
}
