package boot

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"passerelle/board"
)

// Link is what the interface naming knows of a network port.
type Link struct {
	Name string
	// Device is the port's device path under /sys/devices (empty for
	// virtual links: lo, bridges, tunnels).
	Device string
	MAC    string
}

// Rename is one link to rename.
type Rename struct{ From, To string }

// PlanRenames decides which links take the board's names: each board
// interface with a Device or MAC pattern takes the first link (by name)
// that matches and is not already claimed. A link that already has its
// name stays; a board name held by a link that does not match is an
// error (renaming it away would hide a wiring mistake). Interfaces
// without a pattern (the lab) are left alone.
func PlanRenames(ifaces []board.Interface, links []Link) ([]Rename, error) {
	links = append([]Link(nil), links...)
	sort.Slice(links, func(i, j int) bool { return links[i].Name < links[j].Name })
	byName := map[string]Link{}
	for _, l := range links {
		byName[l.Name] = l
	}
	claimed := map[string]bool{}
	var out []Rename
	var errs []string
	for _, want := range ifaces {
		if want.Device == "" && want.MAC == "" {
			continue
		}
		if l, ok := byName[want.Name]; ok {
			if matches(want, l) {
				claimed[l.Name] = true
				continue
			}
			errs = append(errs, fmt.Sprintf("%s is taken by a port that does not match (device %q, MAC %s)", want.Name, l.Device, l.MAC))
			continue
		}
		for _, l := range links {
			if claimed[l.Name] || !matches(want, l) {
				continue
			}
			claimed[l.Name] = true
			out = append(out, Rename{From: l.Name, To: want.Name})
			break
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("interface naming: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

func matches(want board.Interface, l Link) bool {
	if l.Device == "" {
		return false
	}
	if want.Device != "" && !matchTail(want.Device, l.Device) {
		return false
	}
	if want.MAC != "" {
		if ok, _ := path.Match(strings.ToLower(want.MAC), strings.ToLower(l.MAC)); !ok {
			return false
		}
	}
	return true
}

// matchTail matches a glob against a device path or any of its trailing
// parts ("*/0000:00:02.0/virtio*" matches
// "platform/4010000000.pcie/pci0000:00/0000:00:02.0/virtio1"): a '*' of
// path.Match stops at '/', and the head of a path (the bus controller)
// is what a board definition should not have to spell.
func matchTail(pattern, p string) bool {
	for {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[i+1:]
	}
}
