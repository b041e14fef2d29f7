package tunnel

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"tailscale.com/ipn"
	"tailscale.com/types/opt"

	"passerelle/pkg/config"
)

// Interface is tailscaled's TUN device, the firewall's "tunnel" zone.
const Interface = "tailscale0"

// Port is tailscaled's WireGuard UDP port, the one port the firewall opens
// on the uplinks for it.
const Port = 41641

// Plan is the tunnel's desired state. The zero value (and Enabled false)
// means no tunnel: tailscaled is not run.
type Plan struct {
	Enabled         bool
	ControlURL      string
	AuthKeyFile     string
	StateDir        string // on /perm: the node's keys survive reboots
	Hostname        string
	AdvertiseRoutes []netip.Prefix
	AcademyPrefixes []netip.Prefix
	// PreferUplink is the uplink tailscaled's own traffic takes while it
	// is usable ("" or absent: the uplink of new flows).
	PreferUplink string
}

// PreferredUplink is the uplink the tunnel rides when it is usable: the
// academies' network.
const PreferredUplink = "renater"

// Compile computes the tunnel's plan from a valid config.
func Compile(cfg *config.Config) (*Plan, error) {
	t := cfg.Tunnel
	if !t.Enabled {
		return &Plan{}, nil
	}
	p := &Plan{
		Enabled:         true,
		ControlURL:      t.ControlURL,
		AuthKeyFile:     t.AuthKeyFile,
		StateDir:        filepath.Join(filepath.Dir(t.AuthKeyFile), "state"),
		Hostname:        cfg.Identity.Hostname,
		AdvertiseRoutes: slices.Clone(t.AdvertiseRoutes),
		AcademyPrefixes: slices.Clone(t.AcademyPrefixes),
	}
	if p.Hostname == "" {
		p.Hostname = "passerelle-" + strings.ToLower(cfg.Identity.UAI)
	}
	p.PreferUplink = preferredUplink(cfg.Uplinks)
	return p, nil
}

// preferredUplink is the uplink the tunnel rides while it is usable: the
// one named renater, else the only uplink of the lowest priority (a school
// whose links are named otherwise, e.g. fibre and backup4g). Uplinks
// sharing the lowest priority share new flows: the tunnel then follows the
// uplink of new flows, with no preference.
func preferredUplink(ups []config.Uplink) string {
	if i := slices.IndexFunc(ups, func(u config.Uplink) bool { return u.Name == PreferredUplink }); i >= 0 {
		return ups[i].Name
	}
	best, ties := -1, 0
	for i, u := range ups {
		switch {
		case best < 0 || u.Priority < ups[best].Priority:
			best, ties = i, 1
		case u.Priority == ups[best].Priority:
			ties++
		}
	}
	if ties != 1 {
		return ""
	}
	return ups[best].Name
}

// ConfigFile renders tailscaled's declarative configuration
// (tailscaled --config=FILE) for the auth key file as key found it.
//
// The key is named ("file:PATH") only when the file holds a usable key:
// tailscaled reads a named key file at every start until it runs, and
// exits when the file is missing, so a box whose key was removed after
// enrolment (keys are one-shot) or never installed would crash-loop.
// Without a key it starts all the same, logs in from its state if the box
// is enrolled, and otherwise waits for one (the observer says so).
func (p *Plan) ConfigFile(key KeyCheck) ([]byte, error) {
	if !p.Enabled {
		return nil, fmt.Errorf("tunnel disabled: no tailscaled config")
	}
	if key.File != p.AuthKeyFile {
		return nil, fmt.Errorf("tunnel: auth key checked at %s, the plan's is %s", key.File, p.AuthKeyFile)
	}
	c := p.conf()
	if key.Usable() {
		k := "file:" + p.AuthKeyFile
		c.AuthKey = &k
	}
	return json.MarshalIndent(c, "", "  ")
}

// conf is tailscaled's configuration without the auth key.
func (p *Plan) conf() *ipn.ConfigVAlpha {
	off := "off"
	return &ipn.ConfigVAlpha{
		Version: "alpha0",
		// Not locked: a changed plan is handed to the running tailscaled
		// with EditPrefs, which a locked config refuses.
		Locked:          opt.NewBool(false),
		ServerURL:       &p.ControlURL,
		Enabled:         opt.NewBool(true),
		Hostname:        &p.Hostname,
		AcceptDNS:       opt.NewBool(false),
		AcceptRoutes:    opt.NewBool(true),
		AdvertiseRoutes: p.routes(),
		DisableSNAT:     opt.NewBool(true),
		NetfilterMode:   &off,
	}
}

// routes is AdvertiseRoutes, never nil (nil means "leave as is" to
// EditPrefs).
func (p *Plan) routes() []netip.Prefix {
	if p.AdvertiseRoutes == nil {
		return []netip.Prefix{}
	}
	return p.AdvertiseRoutes
}

// Prefs are the preferences EditPrefs can change in a running tailscaled
// without a restart.
func (p *Plan) Prefs() (*ipn.MaskedPrefs, error) {
	mp, err := p.conf().ToPrefs()
	if err != nil {
		return nil, err
	}
	// What needs a restart is not edited in place.
	mp.ControlURLSet = false
	mp.LoggedOutSet = false
	return &mp, nil
}

// NeedsRestart reports whether going from old to p needs a new tailscaled:
// another control server, key file or state directory.
func (p *Plan) NeedsRestart(old *Plan) bool {
	return old == nil || !old.Enabled || old.ControlURL != p.ControlURL ||
		old.AuthKeyFile != p.AuthKeyFile || old.StateDir != p.StateDir
}

// String renders the plan as stable text.
func (p *Plan) String() string {
	if !p.Enabled {
		return "tunnel: disabled\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tunnel: tailscaled on %s, udp/%d\n", Interface, Port)
	fmt.Fprintf(&b, "  control %s\n", p.ControlURL)
	fmt.Fprintf(&b, "  auth key file:%s, state %s\n", p.AuthKeyFile, p.StateDir)
	fmt.Fprintf(&b, "  hostname %s\n", p.Hostname)
	fmt.Fprintf(&b, "  advertise %s\n", prefixes(p.AdvertiseRoutes))
	fmt.Fprintf(&b, "  academy %s\n", prefixes(p.AcademyPrefixes))
	b.WriteString("  accept routes, no DNS from the tailnet, netfilter off, SNAT off\n")
	via := "the uplink of new flows"
	if p.PreferUplink != "" {
		via = p.PreferUplink + " while usable, else the uplink of new flows"
	}
	fmt.Fprintf(&b, "  tailscaled's own traffic: %s\n", via)
	return b.String()
}

func prefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "(none)"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}
