package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type linuxSystem struct{}

func newSystem() system { return linuxSystem{} }

func (linuxSystem) apply(ctx context.Context, log *slog.Logger, old, want *Plan) ([]string, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()

	if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", boolInt(want.Forwarding)); err != nil {
		return nil, err
	}
	var missing []string
	var errs []error
	// Bridges first, so ports can join them.
	for _, l := range want.Links {
		if l.Bridge {
			if err := ensureBridge(h, l.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, l := range want.Links {
		if err := ctx.Err(); err != nil {
			return missing, err
		}
		link, err := h.LinkByName(l.Name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				missing = append(missing, l.Name)
				continue
			}
			errs = append(errs, fmt.Errorf("link %s: %w", l.Name, err))
			continue
		}
		if err := applyLink(h, link, l, old); err != nil {
			errs = append(errs, err)
		}
	}
	if old != nil {
		for _, l := range old.Links {
			if _, keep := want.Link(l.Name); !keep {
				if err := releaseLink(h, l); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := removeLegacyRoutes(h); err != nil {
		errs = append(errs, err)
	}
	return missing, errors.Join(errs...)
}

func writeSysctl(path string, v int) error {
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n", v)), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

func ensureBridge(h *netlink.Handle, name string) error {
	if _, err := h.LinkByName(name); err == nil {
		return nil
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %s: create: %w", name, err)
	}
	return nil
}

func applyLink(h *netlink.Handle, link netlink.Link, l Link, old *Plan) error {
	attrs := link.Attrs()
	if l.MTU > 0 && attrs.MTU != l.MTU {
		if err := h.LinkSetMTU(link, l.MTU); err != nil {
			return fmt.Errorf("link %s: set mtu %d: %w", l.Name, l.MTU, err)
		}
	}
	if l.Master != "" {
		master, err := h.LinkByName(l.Master)
		if err != nil {
			return fmt.Errorf("link %s: bridge %s: %w", l.Name, l.Master, err)
		}
		if attrs.MasterIndex != master.Attrs().Index {
			if err := h.LinkSetMaster(link, master); err != nil {
				return fmt.Errorf("link %s: join bridge %s: %w", l.Name, l.Master, err)
			}
		}
	} else if attrs.MasterIndex != 0 && wasPort(old, l.Name) {
		if err := h.LinkSetNoMaster(link); err != nil {
			return fmt.Errorf("link %s: leave bridge: %w", l.Name, err)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("link %s: set up: %w", l.Name, err)
		}
	}
	if l.DHCP {
		return nil // the uplink manager's DHCP client owns them
	}
	return syncAddrs(h, link, l.Addrs)
}

func wasPort(old *Plan, name string) bool {
	if old == nil {
		return false
	}
	l, ok := old.Link(name)
	return ok && l.Master != ""
}

// syncAddrs makes the link's global IPv4 addresses exactly want. The box
// owns the interfaces named in its config, so other addresses are stale.
func syncAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	have, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("link %s: list addresses: %w", link.Attrs().Name, err)
	}
	var errs []error
	for _, a := range have {
		p := toPrefix(a.IPNet)
		if a.Scope != int(netlink.SCOPE_UNIVERSE) || slices.Contains(want, p) {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			errs = append(errs, fmt.Errorf("link %s: remove address %s: %w", link.Attrs().Name, p, err))
		}
	}
	for _, p := range want {
		addr := &netlink.Addr{IPNet: toIPNet(p)}
		if err := h.AddrReplace(link, addr); err != nil {
			errs = append(errs, fmt.Errorf("link %s: add address %s: %w", link.Attrs().Name, p, err))
		}
	}
	return errors.Join(errs...)
}

// releaseLink undoes what the box did to a link the new plan drops: its
// addresses go, a bridge of ours is deleted, a port leaves its bridge.
func releaseLink(h *netlink.Handle, l Link) error {
	link, err := h.LinkByName(l.Name)
	if err != nil {
		return nil // already gone
	}
	if l.Bridge {
		if err := h.LinkDel(link); err != nil {
			return fmt.Errorf("bridge %s: delete: %w", l.Name, err)
		}
		return nil
	}
	if l.Master != "" {
		if err := h.LinkSetNoMaster(link); err != nil {
			return fmt.Errorf("link %s: leave bridge: %w", l.Name, err)
		}
	}
	if l.DHCP {
		return nil // the uplink manager releases the lease and its address
	}
	return syncAddrs(h, link, nil)
}

// removeLegacyRoutes deletes the main-table default routes that earlier
// versions installed (protocol RouteProtocol): left in place, they would
// override the uplink manager's policy routing.
func removeLegacyRoutes(h *netlink.Handle) error {
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

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
