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
// in order, then the default. Defaults by zone kind:
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
// and ping (rate-limited) from every zone but guest ones; the status page
// from the zones of status_page.zones. Guest zones get DHCP and DNS and
// nothing else from the box: not even NTP, as phones set their clocks
// from the internet, which guests do reach, and the box keeps its surface
// towards unknown devices minimal. Denied traffic from a LAN zone is
// rejected (admin-prohibited) so a client fails fast; from the internet or
// the tunnel it is dropped.
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
//     source address to a peer. With it, a reply arriving on uplink i only
//     passes if the mark of uplink i routes back through uplink i: the
//     uplink manager's per-uplink tables must exist for every uplink that
//     receives traffic.
//
// # Counters
//
// Counters are named counter objects (pairs fwd-S-D and in-S, rules
// rule-NAME, port forwards pf-NAME, masquerade masq-UPLINK, and the drops:
// spoofed, syn-flood, doh-blocked, dot-rejected). Replacing the table
// resets them, so Apply reads them just before the transaction and
// creates the new ones with the old values: a counter survives any reload
// that keeps its name. Packets counted between that read and the commit
// (a few milliseconds) are not carried over.
package firewall
