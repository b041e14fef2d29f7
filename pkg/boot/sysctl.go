package boot

import "strconv"

// Sysctl is one kernel setting, key in dotted form.
type Sysctl struct {
	Key, Value string
}

// Sysctls are the kernel settings of a router with mem bytes of memory.
// Only network settings: they belong to the network namespace, so a test
// running the daemon as PID 1 in its own namespaces changes nothing on
// the host.
func Sysctls(mem uint64) []Sysctl {
	return []Sysctl{
		{"net.ipv4.ip_forward", "1"},
		// Loose reverse-path filtering: with several uplinks and policy
		// routing, strict mode drops replies that arrive on an uplink
		// other than the main table's choice. The firewall does the
		// strict, mark-aware check with a fib expression.
		{"net.ipv4.conf.all.rp_filter", "2"},
		{"net.ipv4.conf.default.rp_filter", "2"},
		{"net.ipv4.conf.all.accept_redirects", "0"},
		{"net.ipv4.conf.default.accept_redirects", "0"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.tcp_syncookies", "1"},
		{"net.netfilter.nf_conntrack_max", strconv.Itoa(ConntrackMax(mem))},
		// Established TCP flows are forgotten after 2 h of silence
		// instead of 5 days, so a school's table does not fill with
		// dead laptops' connections.
		{"net.netfilter.nf_conntrack_tcp_timeout_established", "7200"},
	}
}

// ConntrackMax sizes the connection table: one entry per 16 KiB of memory
// (about 2 % of memory at ~300 bytes an entry), between 16 384 and
// 262 144. With mem unknown (0), 65 536.
func ConntrackMax(mem uint64) int {
	if mem == 0 {
		return 65536
	}
	return int(min(max(mem/(16<<10), 16384), 262144))
}
