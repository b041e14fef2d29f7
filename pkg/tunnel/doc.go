// Package tunnel keeps the box's overlay link to the academy datacenter up:
// tailscaled, as a subnet router on a kernel TUN (tailscale0), run by the
// supervisor and configured declaratively (--config=FILE, ipn.ConfigVAlpha),
// driven and observed through its LocalAPI (tailscale.com/client/local).
//
// What the box asks of tailscaled (plan.go):
//
//   - the academy's control server (Headscale in production), the
//     pre-authorised key read from a file on /perm ("file:" prefix, so the
//     key never sits in the rendered config);
//   - the school subnets of tunnel.advertise_routes offered to the academy,
//     the academy's routes accepted, the tailnet's DNS not accepted (the
//     box's DNS filter forwards the academy's domains itself: those of
//     tunnel.academy_domains to the academy's resolvers over tailscale0,
//     tunnel.tailnet_domain to tailscaled's resolver 100.100.100.100,
//     which answers the tailnet's names even so; pkg/dnsfilter);
//   - netfilter mode off (the box's firewall owns nftables: tailscaled must
//     not add its own chains) and SNAT off, so the datacenter sees the real
//     address of a school's client;
//   - the state on /perm beside the key (<dir of auth_key_file>/state), the
//     LocalAPI socket, the config file and the logs (TS_LOGS_DIR) in a run
//     directory (/run/passerelle/tunnel).
//
// A changed plan goes to the running tailscaled through EditPrefs when only
// preferences change (routes, host name); a new control server, key file or
// state directory restarts it. The config file is written as "not locked"
// so that EditPrefs is allowed.
//
// Routing (routing_linux.go): tailscaled marks its own sockets with
// 0x80000/0xff0000 and its rules send that mark to the main table, which on
// the box has no default route (uplinks are policy-routed, pkg/netmark). The
// tunnel installs one rule before tailscaled's (netmark.PrioTunnelBypass):
// tailscaled's own traffic (control, DERP, WireGuard) looks up the preferred
// uplink's table (Renater) while the uplink manager says it is usable, and
// the table of new flows (the active uplink) otherwise. So the tunnel rides
// Renater when both links are up, follows a failover to the backup, and
// returns to Renater when it is back. tailscaled has no per-socket mark
// option; a rule on its mark does the same without patching it.
//
// Observation (observe.go): Run polls the LocalAPI (Status, and a disco
// ping of the academy's subnet router) and turns it into plain-language
// events (event=tunnel-state, tunnel-path), a health warning while the
// academy is unreachable ("tunnel to the academy down since 10:42, last
// seen through renater"), and metrics (up, path, bytes, round trip).
package tunnel
