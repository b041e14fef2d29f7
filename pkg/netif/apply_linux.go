package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/rtnl"
)

// linuxSystem is the thin executor under diff: it observes the kernel
// through netlink and runs ops one netlink call (or sysctl write) each.
// Deciding what to do is diff's job, not this one's.
type linuxSystem struct {
	// ns is the network namespace acted on; netns.None() means the
	// daemon's own. Tests set it so they never touch the host.
	ns   netns.NsHandle
	sock *rtnl.Socket // the manager's mutex guards it
}

func newSystem() system { return newLinuxSystem(netns.None()) }

func newLinuxSystem(ns netns.NsHandle) *linuxSystem { return &linuxSystem{ns: ns, sock: rtnl.In(ns)} }

func (s *linuxSystem) handle() (*netlink.Handle, error) { return s.sock.Handle() }

const ipForward = "/proc/sys/net/ipv4/ip_forward"

func (s *linuxSystem) observe() (sysState, error) {
	h, err := s.handle()
	if err != nil {
		return sysState{}, err
	}
	st := sysState{Links: map[string]linkState{}}
	links, err := rtnl.Dump(h.LinkList)
	if err != nil {
		return st, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		st.Links[a.Name] = linkState{
			Bridge: l.Type() == "bridge",
			Master: names[a.MasterIndex],
			Up:     a.Flags&net.FlagUp != 0,
			MTU:    a.MTU,
		}
	}
	addrs, err := rtnl.Dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return st, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		name, ok := names[a.LinkIndex]
		if !ok || a.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		l := st.Links[name]
		l.Addrs = append(l.Addrs, toPrefix(a.IPNet))
		slices.SortFunc(l.Addrs, netip.Prefix.Compare)
		st.Links[name] = l
	}
	routes, err := s.legacyRoutes(h)
	if err != nil {
		return st, err
	}
	st.LegacyRoutes = len(routes)
	err = s.inNS(func() error {
		b, err := os.ReadFile(ipForward)
		st.Forwarding = strings.TrimSpace(string(b)) == "1"
		return err
	})
	if err != nil {
		return st, fmt.Errorf("sysctl net.ipv4.ip_forward: %w", err)
	}
	return st, nil
}

func (s *linuxSystem) exec(o op) error {
	if err := s.do(o); err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return nil
}

func (s *linuxSystem) do(o op) error {
	h, err := s.handle()
	if err != nil {
		return err
	}
	switch o.kind {
	case opForwarding:
		return s.inNS(func() error { return os.WriteFile(ipForward, fmt.Appendf(nil, "%d\n", boolInt(o.on)), 0o644) })
	case opCreateBridge:
		return h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: o.link}})
	case opRemoveLegacyRoutes:
		routes, err := s.legacyRoutes(h)
		if err != nil {
			return err
		}
		var errs []error
		for _, r := range routes {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("%s: %w", r, err))
			}
		}
		return errors.Join(errs...)
	}
	link, err := h.LinkByName(o.link)
	if err != nil {
		return err
	}
	switch o.kind {
	case opDeleteBridge:
		return h.LinkDel(link)
	case opSetMTU:
		return h.LinkSetMTU(link, o.mtu)
	case opSetMaster:
		master, err := h.LinkByName(o.master)
		if err != nil {
			return err
		}
		return h.LinkSetMaster(link, master)
	case opSetNoMaster:
		return h.LinkSetNoMaster(link)
	case opSetUp:
		return h.LinkSetUp(link)
	case opSetDown:
		return h.LinkSetDown(link)
	case opAddAddr:
		return h.AddrReplace(link, &netlink.Addr{IPNet: toIPNet(o.addr)})
	case opDelAddr:
		err := h.AddrDel(link, &netlink.Addr{IPNet: toIPNet(o.addr)})
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil // already gone: the op's end is reached
		}
		return err
	}
	return fmt.Errorf("unknown op %d", int(o.kind))
}

// legacyRoutes lists the main-table routes that earlier versions installed
// (protocol RouteProtocol): left in place, they would override the uplink
// manager's policy routing.
func (s *linuxSystem) legacyRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	routes, err := rtnl.Dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return routes, nil
}

// inNS runs f in s's namespace: /proc/sys/net shows the namespace of the
// thread that opens it.
func (s *linuxSystem) inNS(f func() error) error { return rtnl.Do(s.ns, f) }

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func toPrefix(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
