package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/rtnl"
)

// nsConn holds what is needed to configure one namespace: a handle on the
// namespace itself (for veth peers) and a route netlink socket inside it.
type nsConn struct {
	name string
	fd   netns.NsHandle
	nl   *netlink.Handle
}

func (c *nsConn) close() {
	if c.nl != nil {
		c.nl.Close()
	}
	if c.fd.IsOpen() {
		c.fd.Close()
	}
}

// build creates everything the plan describes. It leaves teardown to the
// caller (Down), which works from the plan and copes with partial builds.
// The netlink sockets and namespace handles opened here are all closed on
// return: open ones would keep namespaces alive after deletion.
func (p *plan) build(ctx context.Context) error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	if err := ensureSharedNetnsDir(); err != nil {
		return err
	}
	for _, ns := range p.namespaces {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createNamedNS(ns.name); err != nil {
			return fmt.Errorf("create namespace %s (%s): %w", ns.name, ns.role, err)
		}
	}

	conns := map[string]*nsConn{}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for _, ns := range p.namespaces {
		c, err := openNS(ns.name)
		if err != nil {
			return err
		}
		conns[ns.role] = c
	}

	// Sysctls first, so that interfaces created afterwards inherit the
	// "default" values.
	for _, ns := range p.namespaces {
		if err := p.applySysctls(ns); err != nil {
			return err
		}
	}
	for _, ns := range p.namespaces {
		if err := setLinkUp(conns[ns.role], loopback); err != nil {
			return err
		}
	}
	for _, v := range p.veths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := addVeth(conns[v.aRole], v.aLink, conns[v.bRole], v.bLink); err != nil {
			return err
		}
	}
	for _, a := range p.addrs {
		if err := addAddr(conns[a.role], a.link, a.addr); err != nil {
			return err
		}
	}
	for _, r := range p.routes {
		if err := addRoute(conns[r.role], r.link, r.dst, r.gw); err != nil {
			return err
		}
	}
	return nil
}

// openNS opens a namespace handle and a route netlink socket inside it.
func openNS(name string) (*nsConn, error) {
	fd, err := netns.GetFromPath(nsPath(name))
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	// NETLINK_ROUTE only: the default set also opens xfrm and netfilter
	// sockets the lab has no use for.
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink socket in namespace %s: %w", name, err)
	}
	return &nsConn{name: name, fd: fd, nl: h}, nil
}

// applySysctls makes the lab's routers plain deterministic routers:
// forwarding where the plan asks for it, and no reverse-path filtering
// inherited from the host's settings (filtering is the firmware's business,
// not the lab's). The box namespace is left alone: the firmware under test
// owns its sysctls.
func (p *plan) applySysctls(ns nsPlan) error {
	if ns.role == RoleBox {
		return nil
	}
	settings := map[string]string{
		"/proc/sys/net/ipv4/conf/all/rp_filter":     "0",
		"/proc/sys/net/ipv4/conf/default/rp_filter": "0",
	}
	for _, r := range p.forwarding {
		if r == ns.role {
			settings["/proc/sys/net/ipv4/ip_forward"] = "1"
		}
	}
	// /proc/sys/net reflects the network namespace of the thread that opens
	// the file, hence the writes from inside the namespace.
	err := RunInNamespace(ns.name, func() error {
		var errs []error
		for path, v := range settings {
			if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("sysctls in %s: %w", ns.name, err)
	}
	return nil
}

// addVeth creates a veth pair with one end in each namespace and brings
// both ends up. The pair is created from inside namespace a with its peer
// placed directly in namespace b, so it never appears in the root
// namespace, not even for an instant.
func addVeth(a *nsConn, aLink string, b *nsConn, bLink string) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aLink},
		PeerName:      bLink,
		PeerNamespace: netlink.NsFd(int(b.fd)),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s <-> %s/%s: %w", a.name, aLink, b.name, bLink, err)
	}
	if err := setLinkUp(a, aLink); err != nil {
		return err
	}
	return setLinkUp(b, bLink)
}

// linkByName looks a link up. On kernels without by-name lookup the library
// falls back to a dump, which may be interrupted by concurrent changes.
func (c *nsConn) linkByName(name string) (netlink.Link, error) {
	link, err := rtnl.Dump(func() (netlink.Link, error) { return c.nl.LinkByName(name) })
	if err != nil {
		return nil, fmt.Errorf("find link %s in %s: %w", name, c.name, err)
	}
	return link, nil
}

func setLinkUp(c *nsConn, name string) error {
	link, err := c.linkByName(name)
	if err != nil {
		return err
	}
	if err := c.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set link %s up in %s: %w", name, c.name, err)
	}
	return nil
}

func addAddr(c *nsConn, linkName string, addr netip.Prefix) error {
	link, err := c.linkByName(linkName)
	if err != nil {
		return err
	}
	if err := c.nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("add address %v to %s in %s: %w", addr, linkName, c.name, err)
	}
	return nil
}

// addRoute adds a unicast route; a zero-length or invalid dst means the
// default route.
func addRoute(c *nsConn, linkName string, dst netip.Prefix, gw netip.Addr) error {
	link, err := c.linkByName(linkName)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if dst.IsValid() && dst.Bits() > 0 {
		r.Dst = ipNet(dst.Masked())
	}
	if err := c.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %v via %v dev %s in %s: %w", routeDst(dst), gw, linkName, c.name, err)
	}
	return nil
}

func routeDst(dst netip.Prefix) string {
	if !dst.IsValid() || dst.Bits() == 0 {
		return "default"
	}
	return dst.String()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
