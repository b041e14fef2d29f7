// Package firewall owns the box's one nftables table, inet passerelle: the
// school's zone firewall, NAT, DNS enforcement and the connection marks
// the uplink manager relies on.
//
// Compile turns a config into a Plan (pure: sets, named counters, chains
// and rules in a small typed form that renders as nft text). Apply
// replaces the table with the plan in one netlink transaction (add table,
// delete table, add table, then everything else): the kernel applies it
// all or nothing, so a refused ruleset leaves the previous one in place.
// The box never flushes the whole ruleset and never touches another table
// (tailscaled's, for one).
//
// # Zones
//
// Every LAN zone, "internet" (the uplinks) and "tunnel" (tailscale0, when
// the tunnel is enabled or referenced) is an end. Traffic from end S to
// end D is decided in chain fwd-S-D (in-S for traffic to the box), which
// counts every packet of the pair in a named counter of the same name,
// accepts established flows, then applies the config's rules for the pair
// in order, then the default. Pairs get such a chain when something
// concerns them: a zone and itself, every pair with the internet or the
// tunnel, pairs named by a rule or a forwarding (in both directions), and
// every zone towards a zone holding a port-forward target. Two zones with
// nothing between them share the source's fall-through in fwd-S, counted
// in fwd-S-other-zones: established flows pass, anything else is
// rejected, which is what their own chain would do. So the table, and the
// compile, grow linearly with the zones (at most config.MaxZones, 64), not
// with their pairs. Defaults by zone kind:
//
//   - every zone reaches itself;
//   - pedagogical and guest zones reach the internet;
//   - administrative zones reach the academy prefixes (tunnel.academy_prefixes)
//     through the tunnel; the internet only with a forwarding;
//   - DMZ servers are reached only through port forwards: from the internet,
//     and from every zone (guests included) through the public address,
//     which is the internet's way in anyway (hairpin NAT);
//   - firewall.forwardings open a pair entirely.
//
// What a zone may ask of the box itself: DHCP (67/udp, when the zone serves
// DHCP) and DNS (53/udp and tcp) everywhere; NTP (123/udp, when time.serve)
// and ping (rate-limited, below) from every zone but guest ones; the status page
// from the zones of status_page.zones. Guest zones get DHCP and DNS and
// nothing else from the box: not even NTP, as phones set their clocks
// from the internet, which guests do reach, and the box keeps its surface
// towards unknown devices minimal. Denied traffic from a LAN zone is
// rejected (admin-prohibited) so a client fails fast; from the internet or
// the tunnel it is dropped.
//
// # Rate limits
//
// Limits are per source address: meters, dynamic sets keyed by ip saddr
// whose elements each hold their own limit (nft's "update @set { ip saddr
// limit rate over ... }"), so a noisy host spends its own budget and no
// one else's:
//
//   - echo requests to the box: 10/s (burst 20) per client of a zone or
//     the tunnel (meter ping-lan), 5/s (burst 10) per internet host
//     (ping-wan). The meter comes before the conntrack shortcut: the
//     requests of a ping under way are "established" and would skip it.
//   - new TCP connections (SYN alone) from an internet host: 20/s (burst
//     40) to the box itself (syn-in), and apart from it 100/s (burst 200)
//     through the box, i.e. to port forwards (syn-fwd). A flood of the
//     box's ports does not eat the forwards' budget, and a flooding host
//     does not eat another's.
//
// Drops are counted in ping-flood, syn-flood and syn-flood-fwd. A meter
// forgets a source 10 s after its last packet (longer than any refill,
// burst/rate = 2 s) and holds at most 16,384 internet hosts or 8,192
// clients. When it is full (a flood from that many spoofed sources), a new
// source gets no element: its rule does not match and its packets go on to
// the chain's next rules, as without a limit (closed ports still drop them;
// a port forward's server then relies on its own SYN cookies). Replacing
// the table (every reload) resets the meters. A flood from many sources
// at once is not what these limits are for: that is the ISP's to absorb.
//
// # DNS enforcement
//
// Plain DNS (53/udp and tcp) from any LAN zone to anything but the zone's
// box address is DNAT-ed to that address, where the box's resolver
// listens. In zones whose DNS profile protects minors (dns.profiles[].minors),
// DNS-over-TLS and DNS-over-QUIC (853/tcp and udp) are rejected and
// addresses of the blocked sets (filled at run time by the DNS filter through
// Firewall.SetBlocked: DoH endpoints) are dropped, before established flows
// are accepted, so a newly blocked address also cuts open connections.
// Public resolvers (the curated list of resolvers.go: Google, Cloudflare,
// Quad9, OpenDNS, AdGuard, CleanBrowsing, NextDNS, Yandex, Control D,
// DNS.SB, Mullvad, DNS4EU, FDN and others, IPv4 and IPv6, in the constant
// sets resolvers and resolvers6) answer on 443, 853, 5353 and more, so every
// port to them is rejected there (counter resolver-blocked; rejected rather
// than dropped, so a browser falls back to the box's resolver at once),
// ping excepted; plain DNS to them on port 53 is still DNAT-ed to the box
// before the forward hook sees it. What this cannot catch without reading
// payloads (a resolver on an unlisted address, DoH behind a shared CDN
// address, VPNs and tunnels, DNS over QUIC on unknown hosts) is listed in
// docs/firewall.md.
//
// # Contract with the uplink manager
//
// The uplink manager (pkg/uplink) owns ip rules, routing tables, default
// routes and conntrack flushes on failover. The numbers come from
// pkg/netmark; this table provides, on every apply:
//
//  1. prerouting (filter, priority mangle): a connection that arrives from
//     uplink i and has no uplink yet (ct mark & netmark.UplinkMask == 0) is
//     marked ct mark |= netmark.Uplink(i); then every packet gets
//     meta mark = ct mark & netmark.UplinkMask, so the "fwmark Uplink(i)"
//     rules keep established flows (and replies to port forwards) on
//     their uplink.
//  2. postrouting (filter, priority mangle): a connection leaving through
//     uplink i whose ct mark & netmark.UplinkMask == 0 gets
//     ct mark = (ct mark &^ UplinkMask) | netmark.Uplink(i). Other ct mark
//     bits are kept (tailscaled uses 0xff0000).
//  3. postrouting (nat, priority srcnat): masquerade out of every uplink
//     interface (and hairpin masquerade of port forwards inside a zone).
//  4. prerouting (filter, priority mangle, after 1): anti-spoofing with a
//     reverse-path check that uses the restored mark,
//     "fib saddr . mark . iif oif missing drop", on every interface but
//     tailscale0, where WireGuard's cryptokey routing already binds each
//     source address to a peer; and with the tunnel, new connections from
//     100.64.0.0/10 (the tailnet's addresses) dropped unless they come in
//     on tailscale0 (counter cgnat-spoofed). With it, a reply arriving on uplink i only
//     passes if the mark of uplink i routes back through uplink i: the
//     uplink manager's per-uplink tables must exist for every uplink that
//     receives traffic.
//
// # Counters
//
// Counters are named counter objects (pairs fwd-S-D and in-S, rules
// rule-NAME, port forwards pf-NAME, masquerade masq-UPLINK, the
// fall-through fwd-S-other-zones, and the drops: spoofed, invalid,
// cgnat-spoofed, syn-flood, syn-flood-fwd, ping-flood, doh-blocked, resolver-blocked,
// dot-rejected). Replacing the table
// resets them, so Apply reads them just before the transaction and
// creates the new ones with the old values: a counter survives any reload
// that keeps its name. Packets counted between that read and the commit
// (a few milliseconds) are not carried over.
package firewall
