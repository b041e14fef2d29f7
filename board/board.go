// Package board holds the board definitions: which interfaces a board has,
// what they are called and how the kernel's ports are found (bus path or
// MAC address), its watchdog and the kernel modules it needs, those the
// early boot loads to reach /perm and those of the network and firewall.
// Definitions are data (board/<name>/board.yaml) compiled into the binary,
// so a config can be checked against the board it will run on anywhere.
package board

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"sort"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed */board.yaml
var files embed.FS

// Board is one supported board.
type Board struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description"`
	Arch        string      `yaml:"arch"`
	Interfaces  []Interface `yaml:"interfaces"`
	Watchdog    *Watchdog   `yaml:"watchdog"`
	// Console is the kernel's console= for the board's serial port
	// (tools/mkimage writes it on the command line).
	Console string `yaml:"console"`
	// BootModules are loaded by the init before /perm is mounted, from
	// the image's own modules (the config lives on /perm): storage
	// controller, ext4, and the power key's input drivers.
	BootModules []string `yaml:"boot_modules"`
	// Modules are the rest: network drivers, nf_tables and every
	// expression the firewall emits (board_test.go checks the list
	// against pkg/firewall), conntrack netlink, tun, the watchdog driver.
	Modules []string `yaml:"modules"`
	// BootCount is how the board's boot loader tries a new system slot
	// once and falls back to the committed one (README.md of each
	// board): grub-env (GRUB's environment block under UEFI; tools/mkimage
	// builds the A/B disk and pkg/slots drives it), uboot-bootcount
	// (U-Boot's bootcount/bootlimit/altbootcmd) or tryboot (the Raspberry
	// Pi firmware's tryboot flag). Only grub-env is implemented.
	BootCount string `yaml:"boot_count"`
	// PermWait bounds the wait for the /perm partition to appear (USB
	// and MMC storage is probed after the module loads); default 10 s.
	PermWait time.Duration `yaml:"perm_wait"`
}

// How boards count boot tries (Board.BootCount).
const (
	BootCountGRUB    = "grub-env"
	BootCountUBoot   = "uboot-bootcount"
	BootCountTryboot = "tryboot"
)

// AllModules lists the boot modules, then the others.
func (b *Board) AllModules() []string {
	return append(append([]string(nil), b.BootModules...), b.Modules...)
}

// Interface is one network port as the firmware names it.
type Interface struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"` // wan or lan: what the port is meant for
	// Hotplug ports (USB modems, USB adapters) may appear after boot.
	Hotplug bool `yaml:"hotplug"`
	// Device finds the port the kernel names eth0, eth1...: a glob
	// (path.Match) on its device path under /sys/devices or a trailing
	// part of it, e.g.
	// "*/0000:00:02.0/virtio*" or "platform/*/fd580000.ethernet". The
	// init renames the matching link to Name while it is down.
	Device string `yaml:"device"`
	// MAC, when Device cannot tell ports apart, is a glob on the
	// port's permanent address ("dc:a6:32:*").
	MAC string `yaml:"mac"`
}

// Watchdog is the board's hardware watchdog.
type Watchdog struct {
	Device  string        `yaml:"device"`
	Timeout time.Duration `yaml:"timeout"`
}

// Has reports whether the board has an interface of that name.
func (b *Board) Has(iface string) bool {
	for _, i := range b.Interfaces {
		if i.Name == iface {
			return true
		}
	}
	return false
}

// InterfaceNames lists the board's interface names in definition order.
func (b *Board) InterfaceNames() []string {
	out := make([]string, len(b.Interfaces))
	for i, iface := range b.Interfaces {
		out[i] = iface.Name
	}
	return out
}

// Lookup returns the named board definition. The result is shared:
// callers must not modify it.
func Lookup(name string) (*Board, error) {
	if b, ok := parsed()[name]; ok {
		return b, nil
	}
	return parse(name)
}

// parsed decodes every embedded definition once: they cannot change while
// the program runs, and config validation looks a board up per config.
var parsed = sync.OnceValue(func() map[string]*Board {
	m := map[string]*Board{}
	for _, n := range Names() {
		if b, err := parse(n); err == nil {
			m[n] = b
		}
	}
	return m
})

func parse(name string) (*Board, error) {
	data, err := files.ReadFile(path.Join(name, "board.yaml"))
	if err != nil {
		return nil, fmt.Errorf("unknown board %q (known: %v)", name, Names())
	}
	var b Board
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("board %s: %w", name, err)
	}
	if b.Name != name {
		return nil, fmt.Errorf("board %s: definition names itself %q", name, b.Name)
	}
	switch b.BootCount {
	case "", BootCountGRUB, BootCountUBoot, BootCountTryboot:
	default:
		return nil, fmt.Errorf("board %s: boot_count %q: want %s, %s or %s", name, b.BootCount, BootCountGRUB, BootCountUBoot, BootCountTryboot)
	}
	return &b, nil
}

// Names lists the known boards, sorted.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
