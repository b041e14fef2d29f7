// Package config is the configuration model of a Passerelle box: one
// versioned YAML document per box, strictly decoded, with defaults and
// validation that name the file, line, column and field of every problem.
//
// The package is plain data. It must not import kernel libraries
// (netlink, nftables): the NOC's tools validate configs on machines that are
// not routers, and the dependency test in this package enforces that.
//
// Struct tags drive decoding, defaults and the generated JSON Schema:
//
//	yaml:"key"      the key in the document
//	default:"v"     value used when the key is absent (slices: comma-separated)
//	required:"true" the key must be present
//	doc:"..."       description shown in the schema and the reference
package config

import "net/netip"

// CurrentVersion is the only format version this firmware reads.
const CurrentVersion = 1

// Config is the whole configuration of one box.
type Config struct {
	Version    int        `yaml:"version" required:"true" doc:"Format version of this document; must be 1."`
	Board      string     `yaml:"board" doc:"Board definition (board/<name>) whose interface names this config uses; when set, every interface is checked against it."`
	Identity   Identity   `yaml:"identity" required:"true" doc:"Which school this box serves."`
	Uplinks    []Uplink   `yaml:"uplinks" max:"8" required:"true" doc:"Internet links, most preferred first: Renater, then backups."`
	Zones      []Zone     `yaml:"zones" max:"64" required:"true" doc:"The school's LAN zones."`
	Firewall   Firewall   `yaml:"firewall" doc:"Traffic allowed between zones, the internet and the tunnel."`
	DNS        DNS        `yaml:"dns" doc:"The filtering DNS resolver."`
	Time       Time       `yaml:"time" doc:"Clock synchronisation and the NTP service for the zones."`
	Tunnel     Tunnel     `yaml:"tunnel" doc:"Overlay tunnel to the academy datacenter (Tailscale with the academy's Headscale)."`
	Telemetry  Telemetry  `yaml:"telemetry" doc:"Metrics pushed to the academy by Prometheus remote write."`
	Management Management `yaml:"management" doc:"Signed configuration pushed by the academy NOC."`
	StatusPage StatusPage `yaml:"status_page" doc:"Local status page for technicians."`
}

// Identity names the school. The UAI (Unité Administrative Immatriculée) is
// the national school code: seven digits and a check letter.
type Identity struct {
	UAI      string `yaml:"uai" required:"true" doc:"School code (UAI/RNE): 7 digits and their check letter, e.g. 0751234J."`
	Name     string `yaml:"name" required:"true" doc:"School name as staff know it."`
	Academy  string `yaml:"academy" required:"true" doc:"Academy (académie) that manages the box, lower case, e.g. paris."`
	Hostname string `yaml:"hostname" doc:"Host name of the box; default passerelle-<uai in lower case>."`
}

// Uplink is one internet link.
type Uplink struct {
	Name       string       `yaml:"name" required:"true" doc:"Name of the link, e.g. renater or backup4g."`
	Interface  string       `yaml:"interface" required:"true" doc:"Interface carrying the link, e.g. wan0."`
	Addressing Addressing   `yaml:"addressing" default:"static" doc:"How the link gets its address: static or dhcp."`
	Address    netip.Prefix `yaml:"address" doc:"Static address with prefix length, e.g. 192.0.2.2/30 (static only)."`
	Gateway    netip.Addr   `yaml:"gateway" doc:"Next hop of the default route (static only); must be inside address."`
	Priority   int          `yaml:"priority" default:"1" doc:"Lower is preferred; links of equal priority share new flows by weight (1-100)."`
	Weight     int          `yaml:"weight" default:"1" doc:"Share of new flows among healthy links of equal priority (1-100)."`
	MTU        int          `yaml:"mtu" doc:"Interface MTU (576-9000); 0 keeps the driver's."`
	Probe      Probe        `yaml:"probe" doc:"Health probes sent through this link."`
	LeaseFile  string       `yaml:"lease_file" doc:"Where a dhcp uplink keeps its lease across reboots, to ask for the same address; default /perm/uplink/<name>.lease (dhcp only)."`
}

// Probe tunes how an uplink's health is measured. The defaults detect a
// silent failure in under a second without flapping on a lossy line.
type Probe struct {
	Targets      []netip.Addr `yaml:"targets" max:"16" default:"193.51.24.1,9.9.9.9,1.1.1.1" doc:"Addresses probed through the link."`
	Kind         ProbeKind    `yaml:"kind" default:"icmp" doc:"How targets are probed: icmp (echo request), dns (a query to port 53; any answer counts) or http (a request to port 80; any response counts)."`
	Interval     Duration     `yaml:"interval" default:"200ms" doc:"Time between probe rounds (50ms-1m)."`
	Timeout      Duration     `yaml:"timeout" default:"300ms" doc:"How long a probe round waits for its answers (10ms-10s); an answer that comes later, up to 4 x degraded_rtt (or the timeout if longer), does not pass its round but proves the link alive: a slow link is degraded, not offline, and the round timeout grows to twice the recent round trips."`
	Quorum       int          `yaml:"quorum" doc:"Targets that must answer for a round to pass; default a majority."`
	DownAfter    int          `yaml:"down_after" default:"3" doc:"Failed rounds in a row before the link is offline (1-100)."`
	UpAfter      int          `yaml:"up_after" default:"5" doc:"Good rounds in a row before an offline link is used again (1-1000)."`
	DegradedRTT  Duration     `yaml:"degraded_rtt" default:"250ms" doc:"Round-trip time above which the link is degraded."`
	DegradedLoss int          `yaml:"degraded_loss" default:"20" doc:"Loss percentage over the last rounds above which the link is degraded (1-100)."`
	// StandbyInterval and StandbyBudgetMB: issue 13 (metered backups).
	StandbyInterval Duration `yaml:"standby_interval" default:"10s" doc:"Time between probe rounds while the link is a standby backup: it carries no new connections and every preferred link is online and passing its probes; full rate (interval) otherwise (interval-10m)."`
	StandbyBudgetMB int      `yaml:"standby_budget_mb" doc:"Read-only, derived: megabytes a month the probes cost while the link is a standby backup (Ethernet frames of every probe and answer at standby_interval); a value given is replaced."`
}

// Zone is one LAN segment of the school.
type Zone struct {
	Name       string       `yaml:"name" required:"true" doc:"Short name: lower-case letters, digits and _ (at most 12, it names a bridge br-<name>), e.g. peda."`
	Kind       ZoneKind     `yaml:"kind" required:"true" doc:"pedagogical, administrative, guest or dmz: sets the firewall defaults."`
	Interfaces []string     `yaml:"interfaces" max:"16" required:"true" doc:"Interfaces of the zone; more than one are bridged."`
	Subnet     netip.Prefix `yaml:"subnet" required:"true" doc:"IPv4 subnet of the zone, e.g. 10.10.0.0/24."`
	Address    netip.Addr   `yaml:"address" required:"true" doc:"The box's address in the zone (gateway, DNS, NTP for clients)."`
	DNSProfile string       `yaml:"dns_profile" doc:"Name of the DNS profile applied to the zone's clients; required for pedagogical and guest zones."`
	DHCP       DHCP         `yaml:"dhcp" doc:"DHCP service in the zone."`
}

// DHCP is the DHCP service of one zone.
type DHCP struct {
	Enabled      bool          `yaml:"enabled" default:"true" doc:"Serve DHCP in this zone."`
	RangeStart   netip.Addr    `yaml:"range_start" doc:"First address handed out; default the 10th host of the subnet."`
	RangeEnd     netip.Addr    `yaml:"range_end" doc:"Last address handed out; default the last host but one."`
	LeaseTime    Duration      `yaml:"lease_time" doc:"Lease duration (2m-30d); default 12h, 2h in guest zones."`
	Domain       string        `yaml:"domain" doc:"Domain name given to clients; default <zone>.<hostname>.<dns.local_domain>."`
	Reservations []Reservation `yaml:"reservations" max:"4096" doc:"Fixed addresses for known devices."`
}

// Reservation gives one device a fixed address.
type Reservation struct {
	Name    string     `yaml:"name" doc:"What the device is, e.g. printer-cdi."`
	MAC     MAC        `yaml:"mac" required:"true" doc:"Hardware address, e.g. 00:11:22:33:44:55."`
	Address netip.Addr `yaml:"address" required:"true" doc:"Address inside the zone subnet."`
}

// Firewall lists what may cross the box, on top of each zone kind's defaults.
type Firewall struct {
	Forwardings  []Forwarding  `yaml:"forwardings" max:"4096" doc:"Zone pairs allowed to open connections, beyond the kind defaults."`
	Rules        []Rule        `yaml:"rules" max:"1024" doc:"Specific rules, evaluated in order before forwardings."`
	PortForwards []PortForward `yaml:"port_forwards" max:"256" doc:"Inbound ports from the uplinks forwarded to servers (DMZ)."`
}

// Forwarding allows connections from one zone to another. Besides zone
// names, "internet" (the uplinks) and "tunnel" (the academy overlay) are
// valid ends.
type Forwarding struct {
	From string `yaml:"from" required:"true" doc:"Source zone, or tunnel."`
	To   string `yaml:"to" required:"true" doc:"Destination zone, internet or tunnel."`
}

// Rule is one explicit firewall rule.
type Rule struct {
	Name        string         `yaml:"name" required:"true" doc:"Name shown with the rule's counters."`
	From        string         `yaml:"from" required:"true" doc:"Source zone, internet or tunnel."`
	To          string         `yaml:"to" required:"true" doc:"Destination zone, internet, tunnel or box (the box itself)."`
	Protocol    Protocol       `yaml:"protocol" default:"any" doc:"tcp, udp, icmp or any."`
	Ports       []PortRange    `yaml:"ports" max:"64" doc:"Destination ports or ranges (tcp and udp only), e.g. 443 or 8000-8080."`
	Source      []netip.Prefix `yaml:"source" max:"256" doc:"Restrict to these source prefixes."`
	Destination []netip.Prefix `yaml:"destination" max:"256" doc:"Restrict to these destination prefixes."`
	Action      Action         `yaml:"action" required:"true" doc:"accept, drop or reject."`
}

// PortForward publishes a server behind the box.
type PortForward struct {
	Name      string     `yaml:"name" required:"true" doc:"Name of the forward, e.g. web-ent."`
	Uplink    string     `yaml:"uplink" doc:"Uplink it is published on; default every uplink."`
	Protocol  Protocol   `yaml:"protocol" default:"tcp" doc:"tcp or udp."`
	Port      PortRange  `yaml:"port" required:"true" doc:"Public port or range."`
	ToAddress netip.Addr `yaml:"to_address" required:"true" doc:"Server address, inside a LAN zone (usually the DMZ)."`
	ToPort    int        `yaml:"to_port" doc:"Server port; default the public port."`
}

// DNS configures the filtering resolver.
type DNS struct {
	Upstreams           []Upstream           `yaml:"upstreams" max:"8" doc:"Resolvers queries are forwarded to; default Renater's."`
	ConditionalForwards []ConditionalForward `yaml:"conditional_forwards" max:"64" doc:"Domains sent to specific servers (academy names, the tailnet)."`
	Lists               Lists                `yaml:"lists" doc:"Where the UT1 category lists come from."`
	Profiles            []Profile            `yaml:"profiles" max:"32" doc:"Filtering profiles that zones refer to."`
	Cache               Cache                `yaml:"cache" doc:"Answer cache."`
	Privacy             Privacy              `yaml:"privacy" doc:"What the resolver may record about queries."`
	RateLimit           int                  `yaml:"rate_limit" default:"200" doc:"Queries per second allowed from one client (10-100000)."`
	Race                bool                 `yaml:"race" doc:"Send each query to the two best upstreams at once and use the first answer (more upstream traffic, less latency)."`
	// LocalDomain defaults to home.arpa (RFC 8375): reserved for local
	// networks, never a public suffix, and delegated insecurely under
	// .arpa, so validating clients accept the box's unsigned answers
	// (a made-up TLD such as lan is provably absent from the signed root).
	LocalDomain string `yaml:"local_domain" default:"home.arpa" doc:"Domain of the school's local names, answered by the box and never forwarded: <hostname>.<local_domain> is the box, <zone>.<hostname>.<local_domain> each zone's DHCP search domain, with its devices' names. Default home.arpa (RFC 8375, reserved for local networks)."`
}

// Upstream is one forwarding resolver.
type Upstream struct {
	Address netip.AddrPort `yaml:"address" required:"true" doc:"Resolver address and port, e.g. 193.51.24.1:53."`
	Uplink  string         `yaml:"uplink" doc:"Pin queries to this uplink; default whichever is active."`
}

// ConditionalForward sends one domain's queries to specific servers.
type ConditionalForward struct {
	Domain  string           `yaml:"domain" required:"true" doc:"Domain (and its subdomains), e.g. ac-paris.fr."`
	Servers []netip.AddrPort `yaml:"servers" max:"8" required:"true" doc:"Servers for that domain."`
}

// Lists says where category lists are fetched and kept.
type Lists struct {
	Source    string `yaml:"source" doc:"URL of the academy's UT1 mirror, https only (the checksum beside it proves nothing without TLS); empty keeps the lists on the box."`
	Directory string `yaml:"directory" default:"/perm/lists/ut1" doc:"Where the last good lists are kept."`
	Refresh   Window `yaml:"refresh" default:"02:00-05:00" doc:"Daily window in which lists are refreshed, outside school hours."`
	MaxShrink int    `yaml:"max_shrink" default:"50" doc:"Refuse an update that shrinks a category by more than this percentage (1-100)."`
}

// Profile is a filtering policy.
type Profile struct {
	Name          string        `yaml:"name" required:"true" doc:"Profile name that zones refer to."`
	Categories    []string      `yaml:"categories" max:"128" doc:"UT1 categories applied (black categories block, white ones allow)."`
	Allow         []string      `yaml:"allow" max:"10000" doc:"Domains always allowed, with their subdomains (allow wins over deny)."`
	Deny          []string      `yaml:"deny" max:"10000" doc:"Domains always blocked, with their subdomains."`
	SafeSearch    SafeSearch    `yaml:"safe_search" default:"strict" doc:"Safe search on Google, YouTube, Bing, DuckDuckGo, Qwant, Ecosia: strict, moderate or off."`
	BlockResponse BlockResponse `yaml:"block_response" default:"nxdomain" doc:"Answer for blocked names: nxdomain, or blockpage (the box's block page address)."`
	Minors        bool          `yaml:"minors" default:"true" doc:"The profile protects minors: bypass defences on, doh and vpn categories blocked."`
	FailClosed    bool          `yaml:"fail_closed" default:"true" doc:"Until lists are loaded, answer every name as blocked."`
}

// Cache bounds the resolver's answer cache.
type Cache struct {
	Size       int      `yaml:"size" default:"20000" doc:"Entries kept (0 disables the cache, at most 10000000). Whatever the count, the cache holds at most 32 MiB, and answers over 8 KB are served but not kept."`
	MinTTL     Duration `yaml:"min_ttl" default:"0s" doc:"Lower bound applied to answer TTLs."`
	MaxTTL     Duration `yaml:"max_ttl" default:"24h" doc:"Upper bound applied to answer TTLs."`
	ServeStale bool     `yaml:"serve_stale" default:"true" doc:"Answer from expired entries when every upstream fails (RFC 8767)."`
}

// Privacy limits what is kept about minors' activity.
type Privacy struct {
	QueryLog  QueryLog `yaml:"query_log" default:"off" doc:"off (aggregate counters only) or blocked (blocked queries, client address hashed with a daily key)."`
	Retention Duration `yaml:"retention" default:"168h" doc:"How long the blocked-query log is kept (1h-30d)."`
	Directory string   `yaml:"directory" default:"/perm/dns/blocked" doc:"Where the blocked-query log is kept (one file per hour, deleted after retention); never sent off the box."`
}

// Time configures the clock.
type Time struct {
	Servers []string `yaml:"servers" max:"8" default:"ntp.renater.fr" doc:"NTP servers the box synchronises with (host names or addresses)."`
	Serve   bool     `yaml:"serve" default:"true" doc:"Answer NTP queries from the LAN zones (guest zones excepted: phones set their clocks from the internet)."`
}

// Tunnel is the overlay link to the academy datacenter.
type Tunnel struct {
	Enabled         bool           `yaml:"enabled" doc:"Keep the tunnel to the academy up."`
	ControlURL      string         `yaml:"control_url" doc:"Coordination server (the academy's Headscale), https URL."`
	AuthKeyFile     string         `yaml:"auth_key_file" default:"/perm/tunnel/authkey" doc:"File holding the pre-authorised key: one line, needed only until the box is enrolled (tailscaled keeps its node in the state directory beside it). Without it tailscaled waits for one; a key written there is used within seconds."`
	AdvertiseRoutes []netip.Prefix `yaml:"advertise_routes" max:"64" doc:"School subnets offered to the academy; each must be a zone subnet."`
	AcademyPrefixes []netip.Prefix `yaml:"academy_prefixes" max:"256" doc:"Datacenter prefixes reached through the tunnel."`
	// The academy's names are resolved through the tunnel: the box's DNS
	// filter forwards them (conditional forwards, besides
	// dns.conditional_forwards) while the tunnel is enabled.
	AcademyDomains   []string         `yaml:"academy_domains" max:"64" doc:"Academy domains (with their subdomains) resolved by academy_resolvers through the tunnel, e.g. ac-lille.fr."`
	AcademyResolvers []netip.AddrPort `yaml:"academy_resolvers" max:"8" doc:"The academy's resolvers for academy_domains, inside academy_prefixes (reached through the tunnel), e.g. 10.200.0.53:53."`
	TailnetDomain    string           `yaml:"tailnet_domain" doc:"MagicDNS suffix of the academy's tailnet (Headscale's base_domain): its names are answered by the box's tailscaled (100.100.100.100), from the tailnet's node list."`
}

// Telemetry pushes metrics to the academy.
type Telemetry struct {
	Enabled        bool     `yaml:"enabled" doc:"Push metrics."`
	RemoteWriteURL string   `yaml:"remote_write_url" doc:"Prometheus remote-write endpoint, http or https URL."`
	Interval       Duration `yaml:"interval" default:"60s" doc:"Time between pushes (10s-1h)."`
	// Added by issue 15 (the push, its buffer and the local /metrics).
	Via                   TelemetryVia `yaml:"via" default:"uplink" doc:"Path of the pushes: uplink (the first uplink while it is usable, else the active one) or tunnel (the academy tunnel's routes)."`
	BearerTokenFile       string       `yaml:"bearer_token_file" doc:"File holding a bearer token sent with every push (read at each push)."`
	BasicAuthUser         string       `yaml:"basic_auth_user" doc:"User of HTTP basic authentication; the password is read from basic_auth_password_file."`
	BasicAuthPasswordFile string       `yaml:"basic_auth_password_file" doc:"File holding the basic authentication password."`
	Tenant                string       `yaml:"tenant" doc:"Tenant of a multi-tenant receiver, sent as X-Scope-OrgID."`
	CAFile                string       `yaml:"ca_file" doc:"PEM file of the certificate authorities the receiver's certificate must chain to; default the system's."`
	BufferDirectory       string       `yaml:"buffer_directory" default:"/perm/telemetry" doc:"Where unsent pushes are kept across reboots while the receiver or the links are down."`
	BufferKiB             int          `yaml:"buffer_kib" default:"4096" doc:"Most unsent pushes kept, in KiB (64-65536); the oldest are dropped beyond."`
	MetricsPort           int          `yaml:"metrics_port" default:"9100" doc:"TCP port of the local /metrics page (Prometheus text format) on the addresses of metrics_zones and the tunnel."`
	MetricsZones          []string     `yaml:"metrics_zones" max:"64" doc:"Zones allowed to read /metrics; default the administrative zones. Never the uplinks."`
}

// Management controls configuration pushed by the NOC.
type Management struct {
	TrustedKeys    []TrustedKey `yaml:"trusted_keys" max:"16" doc:"Keys whose signatures the box accepts on pushed configuration."`
	ConfirmTimeout Duration     `yaml:"confirm_timeout" default:"5m" doc:"A pushed config that does not reach the NOC again within this time is rolled back (30s-1h)."`
	// Added by issue 16 (pull mode, the push API, the health gate).
	PullURL      string   `yaml:"pull_url" doc:"URL the box polls for its latest signed bundle, http or https; {uai} is replaced by the box's UAI. Empty: no polling."`
	PullInterval Duration `yaml:"pull_interval" default:"5m" doc:"Time between polls of pull_url, with 10% jitter (30s-24h)."`
	CAFile       string   `yaml:"ca_file" doc:"PEM file of the certificate authorities pull_url's certificate must chain to; default the system's."`
	APIPort      int      `yaml:"api_port" default:"8443" doc:"TCP port of the management API (push; HTTPS with the box's own certificate, the status page's) on the box's tunnel address only."`
	NOCTags      []string `yaml:"noc_tags" max:"16" doc:"Tailnet tags of the NOC's machines, the only callers the management API accepts; default [tag:noc]."`
}

// TrustedKey is one NOC signing key.
type TrustedKey struct {
	Name      string    `yaml:"name" required:"true" doc:"Who holds the key, e.g. noc-paris-2026."`
	PublicKey PublicKey `yaml:"public_key" required:"true" doc:"Ed25519 public key, base64 (32 bytes)."`
}

// StatusPage is the technicians' local page.
type StatusPage struct {
	Enabled bool     `yaml:"enabled" default:"true" doc:"Serve the status page."`
	Port    int      `yaml:"port" default:"80" doc:"TCP port on the box's zone addresses."`
	Zones   []string `yaml:"zones" max:"64" doc:"Zones allowed to see it; default the administrative zones."`
	// Added by issue 17 (the page itself: HTTPS, the technician's
	// account, the language). Port stays the plain HTTP port: it
	// redirects to HTTPS on the status zones and serves the block page on
	// the zones whose profile answers blocked names with it.
	HTTPSPort      int      `yaml:"https_port" default:"443" doc:"TCP port of the HTTPS status page on the addresses of the status zones (certificate created by the box at first boot)."`
	User           string   `yaml:"user" default:"technicien" doc:"Name of the technician's account."`
	PasswordHash   string   `yaml:"password_hash" doc:"bcrypt ($2a$, $2b$) or argon2id ($argon2id$) hash of the technician's password; empty: nobody can log in (there is no default password)."`
	Language       string   `yaml:"language" default:"fr" doc:"Language of the page and of passerelle status: fr or en."`
	SessionTimeout Duration `yaml:"session_timeout" default:"30m" doc:"A technician's session ends after this long without a request (1m-12h)."`
}
