// Package tunnel keeps the box's overlay link to the academy datacenter up:
// tailscaled, as a subnet router on a kernel TUN (tailscale0), run by the
// supervisor and configured declaratively (--config=FILE, ipn.ConfigVAlpha),
// driven and observed through its LocalAPI (tailscale.com/client/local).
//
// What the box asks of tailscaled (plan.go):
//
//   - the academy's control server (Headscale in production), the
//     pre-authorised key read from a file on /perm ("file:" prefix, so the
//     key never sits in the rendered config) when that file holds one
//     (below);
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
// The auth key (authkey.go, enrol.go) is needed for the first login only:
// after it the node key in the state directory authenticates the box, and
// one-shot keys are often removed after enrolment. tailscaled reads a key
// file named in its config at every start until it runs, and exits when
// the file is missing: named unconditionally, a missing key made it
// crash-loop under the supervisor, enrolled or not. So Apply checks the
// file (CheckAuthKey: one line, 16 to 512 printable ASCII characters, no
// white space inside; its verdict names the file, never quotes the key)
// and names it in the config only when it holds a usable key. Without one
// tailscaled starts all the same and logs in from its state, or waits. Run
// checks the file again every 5 s (Options.KeyEvery): a change rewrites the
// config (event=tunnel-key), and a new usable key restarts tailscaled
// (event=tunnel-restart, why=auth-key) while it is not in the tailnet: a
// technician who drops the key in gets the tunnel within seconds, without
// a reboot, and a box in the tailnet is not disturbed by a key put back.
//
// Whether the box is enrolled comes from tailscaled's status (HaveNodeKey:
// its state holds a node); why its login fails, from its IPN bus (a
// message from the control server, such as testcontrol's "invalid
// authkey", or Headscale's HTTP 4xx to the register request, is a refusal;
// anything else means the control server was not reached). A box that
// cannot enrol says why (event=tunnel-enrolment, state no-key, key-invalid
// or key-refused; then enrolling, enrolled) in a warning instead of
// tunnel-down: tunnel-not-enrolled ("The tunnel to the academy is not
// enrolled: no auth key in /perm/tunnel/authkey (no such file). Ask the
// academy NOC for this box's pre-authorised key...") or tunnel-key-invalid
// (the file holds no usable key, or the control server refused it).
//
// Routing (routing_linux.go): tailscaled marks its own sockets with
// 0x80000/0xff0000 and its rules send that mark to the main table, which on
// the box has no default route (uplinks are policy-routed, pkg/netmark). The
// tunnel installs one rule before tailscaled's (netmark.PrioTunnelBypass):
// tailscaled's own traffic (control, DERP, WireGuard) looks up the preferred
// uplink's table (Renater) while the uplink manager says it is usable, and
// the table of new flows (the active uplink) otherwise. So the tunnel rides
// Renater when both links are up, follows a failover to the backup, and
// returns to Renater when it is back. Without an uplink named renater, the
// preferred one is the only uplink of the lowest priority (none when
// several share it). tailscaled has no per-socket mark
// option; a rule on its mark does the same without patching it.
//
// Observation (observe.go): Run polls the LocalAPI (Status, and a disco
// ping of the academy's subnet router) and turns it into plain-language
// events (event=tunnel-state, tunnel-path), a health warning while the
// academy is unreachable ("tunnel to the academy down since 10:42, last
// seen through renater"), the enrolment above, and metrics (up, path,
// bytes, round trip).
package tunnel
