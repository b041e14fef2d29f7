// Package status is the technician's view of the box (issue 17): the
// first screen (one line per concern: a colour and a sentence), shown by
// the HTTPS status page and by `passerelle status`; the detail pages; the
// DNS "why" explanation; the pupils' block page; and the daemon's control
// socket the `passerelle status|why|leases|log` commands talk to.
//
// It reads the box through Source, an interface it declares in its own
// terms; cmd/passerelle adapts the components to it. Nothing here imports
// a component package.
package status

import (
	"net"
	"net/netip"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// Source is what the page reads from the box. Every method is cheap and
// never blocks on an apply in progress.
type Source interface {
	// Config is the running configuration, nil before the first apply.
	Config() *config.Config
	Applied() Applied
	Warnings() []health.Warning
	Uplinks() []Uplink
	Tunnel() (Tunnel, bool) // false: no tunnel component
	Time() TimeSync
	Why(zone, name string) Why
	Usage() []ZoneUsage
	Leases(zone string) []Lease
	DNSStats() []DNSStat
	Services() []Service
	ServiceOutput(name string) (stdout, stderr []byte, ok bool)
	Boot() []BootPhase
	// FirewallCounters are the live table's named counters.
	FirewallCounters() ([]Counter, error)
	Version() string
}

// UpdateSource is a Source that also knows the firmware updates (issue
// 18): the first screen then shows the last one.
type UpdateSource interface {
	LastUpdate() (LastUpdate, bool)
}

// LastUpdate is the last firmware update's result.
type LastUpdate struct {
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"` // installed, rejected, failed
	Version string    `json:"version"`
	Slot    string    `json:"slot,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Counter is one named counter of the firewall.
type Counter struct {
	Name    string `json:"name"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Applied says which configuration runs.
type Applied struct {
	Generation int       `json:"generation"` // configurations applied since start
	Source     string    `json:"source"`     // start, sighup
	At         time.Time `json:"at"`
	Path       string    `json:"path"`
	Pending    bool      `json:"pending"` // applied, awaiting confirmation
	// Managed: the NOC pushes configurations, each confirmed after a
	// health check (issue 16); Generation is then the NOC's.
	Managed   bool      `json:"managed"`
	Deadline  time.Time `json:"deadline,omitempty"` // of a pending one
	LastError string    `json:"last_error,omitempty"`
}

// Uplink is one uplink's state.
type Uplink struct {
	Name      string        `json:"name"`
	Interface string        `json:"interface"`
	State     string        `json:"state"` // unknown, online, degraded, offline
	Since     time.Time     `json:"since"`
	Reason    string        `json:"reason,omitempty"`
	Carrier   bool          `json:"carrier"`
	Active    bool          `json:"active"`
	Standby   bool          `json:"standby"`
	RTT       time.Duration `json:"rtt"`
	Loss      float64       `json:"loss"`
	Address   netip.Prefix  `json:"address"`
	Gateway   netip.Addr    `json:"gateway"`
}

// Tunnel is the academy tunnel's state.
type Tunnel struct {
	Enabled bool          `json:"enabled"`
	Up      bool          `json:"up"`
	Reason  string        `json:"reason,omitempty"`
	Since   time.Time     `json:"since"`
	RTT     time.Duration `json:"rtt"`
	Via     string        `json:"via,omitempty"`
	// Enrolment: no-key, key-invalid, key-refused (the box cannot join
	// the academy's tailnet until a technician or the NOC acts),
	// enrolling, enrolled; "" before tailscaled answered. KeyFile is the
	// auth key file.
	Enrolment string `json:"enrolment,omitempty"`
	KeyFile   string `json:"key_file,omitempty"`
	// The detail page's: what tailscaled says.
	Backend       string         `json:"backend,omitempty"` // Running, NeedsLogin, Starting...
	Addrs         []netip.Addr   `json:"addrs,omitempty"`   // the box's tailnet addresses
	Peers         int            `json:"peers"`
	PeersOnline   int            `json:"peers_online"`
	Academy       string         `json:"academy,omitempty"` // the academy's router
	AcademyIP     netip.Addr     `json:"academy_ip,omitzero"`
	Routes        []netip.Prefix `json:"routes,omitempty"`
	Path          string         `json:"path,omitempty"`     // direct, relayed, peer-relay
	Endpoint      string         `json:"endpoint,omitempty"` // direct: the peer's ip:port
	Relay         string         `json:"relay,omitempty"`    // relayed: the DERP region
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       int64          `json:"rx_bytes"`
	TxBytes       int64          `json:"tx_bytes"`
}

// TimeSync is the clock's state.
type TimeSync struct {
	Synced   bool          `json:"synced"`
	Offset   time.Duration `json:"offset"`
	Server   string        `json:"server,omitempty"`
	LastSync time.Time     `json:"last_sync"`
	Err      string        `json:"err,omitempty"`
}

// Why is the filter's decision for a name in a zone (dnsfilter.Why).
type Why struct {
	Zone      string    `json:"zone"`
	Name      string    `json:"name"`
	Profile   string    `json:"profile"`
	Verdict   string    `json:"verdict"` // allowed, blocked, safesearch, unknown-zone, invalid
	Rule      string    `json:"rule"`    // allow, deny, category, white, bypass, lists-not-loaded, safesearch, ""
	Category  string    `json:"category,omitempty"`
	BlockPage bool      `json:"block_page"`
	Lists     ListsInfo `json:"lists"`
	Err       string    `json:"err,omitempty"`
}

// ListsInfo is the UT1 lists version in use.
type ListsInfo struct {
	Loaded     bool      `json:"loaded"`
	Version    string    `json:"version"`
	Since      time.Time `json:"since"`              // installed on the box
	Published  time.Time `json:"published,omitzero"` // by UT1
	Categories int       `json:"categories"`
	Domains    int       `json:"domains"`
}

// ZoneUsage is one zone's DHCP pool use.
type ZoneUsage struct {
	Zone   string `json:"zone"`
	Pool   int    `json:"pool"`
	InUse  int    `json:"in_use"`
	Active int    `json:"active"`
}

// Lease is one live DHCP lease.
type Lease struct {
	Zone     string           `json:"zone"`
	Addr     netip.Addr       `json:"address"`
	MAC      net.HardwareAddr `json:"-"`
	MACText  string           `json:"mac"`
	Hostname string           `json:"hostname,omitempty"`
	Expiry   time.Time        `json:"expiry"`
}

// DNSStat counts blocked queries of one hour, zone and reason: aggregates
// only, never who asked. Category is the UT1 category or "deny" (the
// profile's deny rules), "" for a block that is no category (bypass,
// lists not loaded).
type DNSStat struct {
	Hour     time.Time `json:"hour"`
	Zone     string    `json:"zone"`
	Reason   string    `json:"reason"`
	Category string    `json:"category,omitempty"`
	Blocked  uint64    `json:"blocked"`
}

// Service is one supervised service.
type Service struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
	LastExit string    `json:"last_exit,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// BootPhase is one boot phase's report.
type BootPhase struct {
	Phase string     `json:"phase"`
	Steps []BootStep `json:"steps"`
}

// BootStep is one step of a boot phase.
type BootStep struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took"`
	Err  string        `json:"err,omitempty"`
}
