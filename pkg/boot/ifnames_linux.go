package boot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"passerelle/board"
)

// NameInterfaces gives the board's names to the kernel's ports (eth0 →
// wan0): no udev on the box, so the init does it, each link renamed while
// down (the kernel refuses to rename a running link). Ports that appear
// later (USB adapters) are named on the next call.
func NameInterfaces(log *slog.Logger, ifaces []board.Interface) (string, error) {
	nl, err := netlink.LinkList()
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	var links []Link
	for _, l := range nl {
		a := l.Attrs()
		links = append(links, Link{Name: a.Name, Device: devicePath(a.Name), MAC: a.HardwareAddr.String()})
	}
	renames, perr := PlanRenames(ifaces, links)
	errs := []error{perr}
	var done []string
	for _, r := range renames {
		l, err := netlink.LinkByName(r.From)
		if err == nil && l.Attrs().Flags&net.FlagUp != 0 {
			err = netlink.LinkSetDown(l)
		}
		if err == nil {
			err = netlink.LinkSetName(l, r.To)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rename %s to %s: %w", r.From, r.To, err))
			continue
		}
		log.Info("interface named", "from", r.From, "to", r.To)
		done = append(done, r.From+"→"+r.To)
	}
	if len(done) == 0 {
		return "no rename needed", errors.Join(errs...)
	}
	return strings.Join(done, " "), errors.Join(errs...)
}

// devicePath returns the link's device path relative to /sys/devices, or
// "" for a virtual link.
func devicePath(name string) string {
	p, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", name, "device"))
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel("/sys/devices", p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ""
	}
	return rel
}
