package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/netmark"
	"passerelle/pkg/rtnl"
)

// RouteProtocol marks the routes and rules this package installs
// (rtm_protocol, FRA_PROTOCOL), so `ip route show table all proto 124`
// lists exactly ours.
const RouteProtocol = 124

// linuxSystem acts on the network namespace the daemon runs in. One
// netlink socket is kept open: failover must not wait for a new one.
type linuxSystem struct {
	log *slog.Logger

	mu   sync.Mutex
	sock *rtnl.Socket

	ctMu sync.Mutex
	ct   *conntrack.Conn // kept open too: failover deletes connections right away
}

func newSystem(log *slog.Logger) system { return &linuxSystem{log: log, sock: rtnl.In(netns.None())} }

// handle returns the shared netlink handle; s.mu is held.
func (s *linuxSystem) handle() (*netlink.Handle, error) { return s.sock.Handle() }

// ours reports whether a rule priority is one this package manages.
func ours(prio int) bool {
	return prio == netmark.PrioMainSuppress || prio == netmark.PrioActive ||
		(prio >= netmark.PrioUplinkBase && prio < netmark.PrioUplinkBase+netmark.MaxUplinks)
}

func sameRule(k netlink.Rule, r rule) bool {
	var mask uint32
	if k.Mask != nil {
		mask = *k.Mask
	}
	wantMask := uint32(0)
	if r.Mark != 0 {
		wantMask = netmark.UplinkMask
	}
	return k.Priority == r.Priority && k.Table == r.Table && k.Mark == r.Mark && mask == wantMask &&
		k.SuppressPrefixlen == r.Suppress && k.Src == nil && k.Dst == nil && k.IifName == "" && k.OifName == "" &&
		!k.Invert && k.Goto < 0 && k.UIDRange == nil && k.Dport == nil && k.Sport == nil && k.IPProto == 0
}

func (s *linuxSystem) syncRouting(p *Plan, gws map[int]netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return err
	}
	var errs []error
	if err := s.syncRules(h, p.rules()); err != nil {
		errs = append(errs, err)
	}
	// Balanced uplinks share new flows by a hash of the packet: with the
	// default (addresses only) every flow of a client to one server would
	// take the same uplink; ports spread them.
	if err := os.WriteFile("/proc/sys/net/ipv4/fib_multipath_hash_policy", []byte("1\n"), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("sysctl net.ipv4.fib_multipath_hash_policy: %w", err))
	}
	planned := map[int]Link{}
	for _, l := range p.Links {
		planned[l.Index] = l
	}
	for i := range netmark.MaxUplinks {
		var want *netlink.Route
		if l, ok := planned[i]; ok && gws[i].IsValid() {
			r, err := defaultRoute(h, netmark.UplinkTable(i), []Link{l}, []member{{Index: i, Weight: 1}}, gws)
			if err != nil {
				errs = append(errs, err)
				continue // leave the table as it is rather than empty it
			}
			want = r
		}
		if err := syncTable(h, netmark.UplinkTable(i), want); err != nil {
			errs = append(errs, err)
		}
	}
	// TableActive holds one default route, set by setActive; anything
	// else in it is stale.
	if err := pruneTable(h, netmark.TableActive); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncRules makes our rule priorities hold exactly want.
func (s *linuxSystem) syncRules(h *netlink.Handle, want []rule) error {
	have, err := rtnl.Dump(func() ([]netlink.Rule, error) { return h.RuleList(netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	var errs []error
	present := make([]bool, len(want))
	for _, k := range have {
		if !ours(k.Priority) {
			continue
		}
		keep := false
		for i, r := range want {
			if !present[i] && sameRule(k, r) {
				present[i], keep = true, true
				break
			}
		}
		if !keep {
			if err := h.RuleDel(&k); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove rule %d: %w", k.Priority, err))
			}
		}
	}
	for i, r := range want {
		if present[i] {
			continue
		}
		nr := netlink.NewRule()
		nr.Family = netlink.FAMILY_V4
		nr.Priority = r.Priority
		nr.Table = r.Table
		nr.SuppressPrefixlen = r.Suppress
		nr.Protocol = RouteProtocol
		if r.Mark != 0 {
			mask := netmark.UplinkMask
			nr.Mark, nr.Mask = r.Mark, &mask
		}
		if err := h.RuleAdd(nr); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add rule %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

var defaultDst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}

// defaultRoute builds the default route of table over the members
// (weighted multipath when several). Members whose interface does not
// exist (a USB modem not plugged in yet) are left out: the carrier
// watcher reinstalls the routes when it appears. nil means no member is
// present.
func defaultRoute(h *netlink.Handle, table int, links []Link, members []member, gws map[int]netip.Addr) (*netlink.Route, error) {
	byIndex := map[int]Link{}
	for _, l := range links {
		byIndex[l.Index] = l
	}
	var hops []*netlink.NexthopInfo
	for _, mb := range members {
		l := byIndex[mb.Index]
		link, err := h.LinkByName(l.Interface)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				continue
			}
			return nil, fmt.Errorf("uplink %s: interface %s: %w", l.Name, l.Interface, err)
		}
		hops = append(hops, &netlink.NexthopInfo{LinkIndex: link.Attrs().Index, Gw: gws[mb.Index].AsSlice(), Hops: mb.Weight - 1})
	}
	r := &netlink.Route{Table: table, Dst: defaultDst, Protocol: RouteProtocol, Family: netlink.FAMILY_V4}
	switch len(hops) {
	case 0:
		return nil, nil
	case 1:
		r.LinkIndex, r.Gw = hops[0].LinkIndex, hops[0].Gw
	default:
		r.MultiPath = hops
	}
	return r, nil
}

// syncTable makes table hold exactly want (nil: nothing).
func syncTable(h *netlink.Handle, table int, want *netlink.Route) error {
	have, err := rtnl.Dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list table %d: %w", table, err)
	}
	var errs []error
	for _, r := range have {
		if want != nil && r.LinkIndex == want.LinkIndex && r.Gw.Equal(want.Gw) && isDefault(r.Dst) && r.Priority == 0 {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("table %d: remove %s: %w", table, r, err))
		}
	}
	if want != nil {
		if err := h.RouteReplace(want); err != nil {
			errs = append(errs, fmt.Errorf("table %d: default via %s: %w", table, want.Gw, err))
		}
	}
	return errors.Join(errs...)
}

// pruneTable removes every route of table but the default one.
func pruneTable(h *netlink.Handle, table int) error {
	have, err := rtnl.Dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list table %d: %w", table, err)
	}
	var errs []error
	for _, r := range have {
		if isDefault(r.Dst) && r.Priority == 0 {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("table %d: remove %s: %w", table, r, err))
		}
	}
	return errors.Join(errs...)
}

func isDefault(n *net.IPNet) bool {
	if n == nil {
		return true
	}
	ones, _ := n.Mask.Size()
	return ones == 0
}

// setActive replaces TableActive's default route in one RTM_NEWROUTE
// (NLM_F_REPLACE): there is no instant without a route.
func (s *linuxSystem) setActive(p *Plan, sel selection, gws map[int]netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return err
	}
	var members []member
	for _, mb := range sel.Members {
		if gws[mb.Index].IsValid() {
			members = append(members, mb)
		}
	}
	r, err := defaultRoute(h, netmark.TableActive, p.Links, members, gws)
	if err != nil {
		return err
	}
	if r == nil {
		err := h.RouteDel(&netlink.Route{Table: netmark.TableActive, Dst: defaultDst, Family: netlink.FAMILY_V4})
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("table %d: remove default: %w", netmark.TableActive, err)
		}
		return nil
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("table %d: replace default: %w", netmark.TableActive, err)
	}
	return nil
}

func (s *linuxSystem) flushConntrack(mark uint32, addr netip.Addr) (int, error) {
	s.ctMu.Lock()
	defer s.ctMu.Unlock()
	if s.ct == nil {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return 0, fmt.Errorf("conntrack: %w", err)
		}
		s.ct = c
	}
	n, err := flushConntrack(s.ct, mark, addr)
	if err != nil {
		s.ct.Close() // a fresh socket next time
		s.ct = nil
	}
	return n, err
}

func flushConntrack(c *conntrack.Conn, mark uint32, addr netip.Addr) (int, error) {
	// The kernel deletes the uplink's connections itself (CTA_FILTER on
	// the mark): no dump, however many there are.
	f := conntrack.NewFilter().Family(netfilter.ProtoIPv4)
	if err := c.FlushFilter(f.Mark(mark).MarkMask(netmark.UplinkMask)); err != nil {
		return 0, fmt.Errorf("conntrack: delete mark %#x: %w", mark, err)
	}
	if !addr.IsValid() {
		return 0, nil
	}
	// Connections the firewall did not tie to an uplink (opened before it
	// loaded, say) but NATed to this uplink's address are just as dead.
	// The kernel selects those without an uplink mark; their reply
	// destination is the NAT address.
	flows, err := c.DumpFilter(f.Mark(0).MarkMask(netmark.UplinkMask), nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: list unmarked: %w", err)
	}
	n := 0
	var errs []error
	for _, fl := range flows {
		if fl.TupleReply.IP.DestinationAddress != addr || !fl.Status.SrcNAT() {
			continue
		}
		if err := c.Delete(fl); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("conntrack: delete connections NATed to %s: %w", addr, err)
	}
	return n, nil
}

func (s *linuxSystem) setAddress(ifname string, old, want netip.Prefix, valid time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	var errs []error
	// The new address goes first, so the link is never without one.
	if want.IsValid() {
		a := &netlink.Addr{IPNet: ipNet(want)}
		if valid > 0 {
			secs := int(max(valid.Round(time.Second), time.Second) / time.Second)
			a.ValidLft, a.PreferedLft = secs, secs
		}
		if err := h.AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("%s: add address %s: %w", ifname, want, err))
		}
	}
	if old.IsValid() && old != want {
		if err := h.AddrDel(link, &netlink.Addr{IPNet: ipNet(old)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("%s: remove address %s: %w", ifname, old, err))
		}
	}
	return errors.Join(errs...)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// resubscribeDelay spaces attempts when the kernel refuses a subscription.
const resubscribeDelay = time.Second

// carrierPoll is how often the uplinks' carrier is also read directly.
// Link events alone are not instant: the kernel's linkwatch sends the
// RTM_NEWLINK of a carrier change at most once a second for most devices
// (one batch per second, for all namespaces), so an event may come up to
// a second late; measured in the lab: 170-640 ms. Reading the flags of two
// or three links 50 times a second costs next to nothing.
const carrierPoll = 20 * time.Millisecond

func (s *linuxSystem) watchCarrier(ctx context.Context, names func() []string, report func(ifname string, up bool, index int)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.pollCarrier(ctx, names, report) })
	for ctx.Err() == nil {
		ch := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ListExisting: true, // a fresh subscription starts from the truth
			ErrorCallback: func(err error) {
				s.log.Debug("link subscription", "err", err)
			},
		})
		if err != nil {
			s.log.Error("cannot follow link events; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(resubscribeDelay):
			}
			continue
		}
		s.follow(ctx, ch, report)
		close(done)
		for range ch { // let the library's reader finish
		}
		if ctx.Err() == nil {
			s.log.Warn("link subscription closed by the kernel; resubscribing")
		}
	}
}

// follow reports link updates until ctx ends or the channel closes.
func (s *linuxSystem) follow(ctx context.Context, ch <-chan netlink.LinkUpdate, report func(ifname string, up bool, index int)) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			if u.Header.Type == unix.RTM_DELLINK {
				report(u.Attrs().Name, false, 0)
				continue
			}
			report(u.Attrs().Name, carrierUp(u.Link), u.Attrs().Index)
		}
	}
}

func carrierUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
}

// pollCarrier reads the carrier of the named links every carrierPoll, on
// a netlink socket of its own (never waiting behind a route change).
func (s *linuxSystem) pollCarrier(ctx context.Context, names func() []string, report func(ifname string, up bool, index int)) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		s.log.Error("cannot poll carrier; relying on link events", "err", err)
		return
	}
	defer h.Close()
	type seen struct {
		up    bool
		index int
	}
	last := map[string]seen{}
	tick := time.NewTicker(carrierPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, name := range names() {
			var now seen
			l, err := h.LinkByName(name)
			var nf netlink.LinkNotFoundError
			switch {
			case err == nil:
				now = seen{carrierUp(l), l.Attrs().Index}
			case !errors.As(err, &nf):
				continue // a netlink hiccup says nothing about the link
			}
			if prev, ok := last[name]; !ok || prev != now {
				last[name] = now
				report(name, now.up, now.index)
			}
		}
	}
}

func (s *linuxSystem) linkStats(ifname string) (rx, tx uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return 0, 0, false
	}
	link, err := h.LinkByName(ifname)
	if err != nil || link.Attrs().Statistics == nil {
		return 0, 0, false
	}
	st := link.Attrs().Statistics
	return st.RxBytes, st.TxBytes, true
}

func (s *linuxSystem) rxPackets(ifname string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return 0, false
	}
	link, err := h.LinkByName(ifname)
	if err != nil || link.Attrs().Statistics == nil {
		return 0, false
	}
	return link.Attrs().Statistics.RxPackets, true
}

// resolveGateway asks the kernel to resolve gw now: a neighbour entry
// that is not valid (left INCOMPLETE or FAILED while the carrier was
// down, whose next ARP retry may be a second away) is deleted, then
// NTF_USE makes the kernel create it and send an ARP request at once, as
// a packet waiting for it would (neigh_event_send).
func (s *linuxSystem) resolveGateway(ifname string, gw netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.handle()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		return err
	}
	idx := link.Attrs().Index
	ip := gw.AsSlice()
	neighs, err := rtnl.Dump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, netlink.FAMILY_V4) })
	if err == nil {
		for _, n := range neighs {
			valid := n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
			if n.IP.Equal(ip) && !valid {
				_ = h.NeighDel(&n)
			}
		}
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: ip, Flags: netlink.NTF_USE}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("resolve %s on %s: %w", gw, ifname, err)
	}
	return nil
}
