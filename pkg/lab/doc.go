// Package lab builds a virtual school network out of Linux network
// namespaces, so that the gateway firmware can be exercised end to end on a
// single machine without touching the host network.
//
// One lab run ("lab" for short) is made of:
//
//   - a box namespace holding the board's interfaces (wan0, wan1, lan0, ...),
//     which the lab creates and brings up but never addresses: that is the
//     firmware's job;
//   - one ISP namespace per uplink, routing the uplink's customer prefix
//     towards the box and everything else towards the internet (no NAT, like
//     a real ISP routing a customer's public addresses);
//   - an internet namespace hosting, in-process, an HTTP server, an
//     authoritative DNS server for the lab.test. zone, a stratum-1 NTP
//     server and a UDP echo that tells a client its source address (Flow);
//   - an academy namespace (the académie's datacenter) with its own HTTP
//     server, reachable through the internet namespace;
//   - one client namespace per LAN zone, whose eth0 is the peer of the box's
//     zone interface.
//
// Every link is a veth pair created directly between two lab namespaces, so
// no link ever exists in the root namespace, even if the creating process is
// killed halfway through. Each run records itself in a state file under
// /run/passerelle-lab before creating anything, which lets Cleanup find and
// remove the leftovers of runs whose process died.
//
// Address plan (all IPv4, documentation ranges):
//
//	198.51.100.0/24     transit links: ISP n <-> internet uses 198.51.100.4n/30
//	                    (ISP side .4n+1, internet side .4n+2); internet <->
//	                    academy uses 198.51.100.252/30 (.253 internet, .254 academy)
//	203.0.113.10/32     internet test server (HTTP :80, DNS :53, NTP :123, echo :7777), on lo
//	203.0.113.100/32    academy server (HTTP :80), on lo
//
// Uplink and zone addresses come from the Spec. An uplink with a DHCPSpec
// gets its address from a DHCP server in its ISP namespace (SpecFromConfig
// puts DHCP uplink n in 100.64.(n+1).0/24); tests change its lease time
// and address through Lab.DHCPServer.
//
// The lab's routers (ISPs, internet) forward and have reverse-path filtering
// off, whatever the host's defaults: the lab must behave the same on every
// machine, and filtering is the firmware's business. The box namespace's
// sysctls are left to the firmware.
//
// Code that talks to the lab from the test process must open its sockets
// inside a namespace: see RunInNamespace and the DialContext, Listen,
// ListenPacket, HTTPClient and StartCommand helpers built on it.
package lab
