package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"passerelle/pkg/dhcpclient"
	"passerelle/pkg/lab"
)

// Uplink tests: the real firmware with the demo's Renater and backup,
// faults made in the ISP namespaces (carrier loss, blackhole, random loss),
// and a client sending 100 packets/s to a server on the lab's internet.

const (
	streamPort = 7778 // TCP: answers each line with the source address it saw
	renaterIP  = "192.0.2.2"
	backupIP   = "192.0.2.6"
)

// startUplinkLab is startFirmware for a config given as text, with a hook
// on the lab spec (DHCP lease times) before the lab is built.
func startUplinkLab(t *testing.T, cfgText string, tweak func(*lab.Spec)) *firmware {
	t.Helper()
	fw := labFor(t, []byte(cfgText), tweak)
	fw.launch(t, t.TempDir())
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	startServers(t, fw.lab)
	return fw
}

// startServers runs the TCP stream server on the lab's internet server
// address (the UDP echo is the lab's own, lab.EchoPort).
func startServers(t *testing.T, l *lab.Lab) {
	t.Helper()
	inet := l.Namespace(lab.RoleInternet)
	ln, err := lab.Listen(inet, "tcp4", fmt.Sprintf("%s:%d", l.InternetServer(), streamPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				peer := c.RemoteAddr().(*net.TCPAddr).IP.String()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", peer, sc.Text())
				}
			}()
		}
	}()
}

// flow is the lab's 100 packets/s UDP flow from a zone's client: one
// socket, one conntrack entry, as a call or a game would.
type flow struct{ *lab.Flow }

func startFlow(t *testing.T, fw *firmware, zone string) *flow {
	t.Helper()
	f, err := lab.StartFlow(fw.lab.Namespace(lab.RoleClient(zone)), fw.lab.InternetServer(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return &flow{f}
}

func (f *flow) stop() { f.Stop() }

// waitSource waits until answers come from src, returning the first one.
func (f *flow) waitSource(t *testing.T, src string, since time.Time, timeout time.Duration) lab.Reply {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range f.Replies() {
			if r.Src.String() == src && r.At.After(since) {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no answer through %s within %s of the fault", src, timeout)
	return lab.Reply{}
}

// outage is the longest time without any answer between from and to.
func (f *flow) outage(from, to time.Time) time.Duration { return f.LongestGap(from, to) }

// nsRun runs a command (ip, nft) for the test; never in product code.
func nsRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// isp names the ISP namespace of an uplink.
func (fw *firmware) isp(uplink string) string { return fw.lab.Namespace(lab.RoleISP(uplink)) }

// blackhole makes an ISP drop everything it forwards, carrier kept: the
// silent failure probes exist for. It returns the undo.
func blackhole(t *testing.T, fw *firmware, uplink string) func() {
	t.Helper()
	ns := fw.isp(uplink)
	nsRun(t, ns, "nft", "add table inet fault; add chain inet fault drops { type filter hook forward priority 0; policy drop; }")
	return func() { nsRun(t, ns, "nft", "delete table inet fault") }
}

// carrier sets the ISP side of an uplink's cable down or up: the box sees
// its carrier go.
func carrier(t *testing.T, fw *firmware, uplink string, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	nsRun(t, fw.isp(uplink), "ip", "link", "set", "box", state)
}

// waitOnline waits until an uplink's probes have confirmed it.
func (fw *firmware) waitOnline(t *testing.T, uplink string) {
	t.Helper()
	fw.waitEvent(t, 10*time.Second, "uplink-state", map[string]string{"uplink": uplink, "state": "online"})
}

func (fw *firmware) activeRoute(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(nsRun(t, fw.lab.Namespace(lab.RoleBox), "ip", "-4", "route", "show", "table", "200"))
}

// probe defaults of the demo config: detection bound of a silent failure.
const blackholeBound = 3*200*time.Millisecond + 300*time.Millisecond

func TestUplinkCarrierLossFailsOverToBackup(t *testing.T) {
	fw := startUplinkLab(t, readDemo(t), nil)
	fw.waitOnline(t, "renater")
	f := startFlow(t, fw, "peda")
	f.waitSource(t, renaterIP, time.Time{}, 5*time.Second)
	time.Sleep(300 * time.Millisecond)

	fault := time.Now()
	carrier(t, fw, "renater", false)
	first := f.waitSource(t, backupIP, fault, 5*time.Second)
	time.Sleep(time.Second)
	out := f.outage(fault, time.Now())
	t.Logf("carrier loss on renater: outage seen by the client %s (first answer through the backup %s after the fault)",
		out.Round(time.Millisecond), first.At.Sub(fault).Round(time.Millisecond))
	if r := fw.activeRoute(t); !strings.Contains(r, "dev wan1") {
		t.Errorf("TableActive after carrier loss: %q, want the backup", r)
	}
	last := f.Replies()
	if got := last[len(last)-1]; got.Src.String() != backupIP {
		t.Errorf("traffic does not continue on the backup: last answer via %s", got.Src.String())
	}
}

func TestUplinkBlackholeDetectedAndRecovered(t *testing.T) {
	fw := startUplinkLab(t, readDemo(t), nil)
	fw.waitOnline(t, "renater")
	fw.waitOnline(t, "backup")
	f := startFlow(t, fw, "peda")
	f.waitSource(t, renaterIP, time.Time{}, 5*time.Second)
	time.Sleep(300 * time.Millisecond)

	// Silent failure: carrier stays, everything beyond the ISP is lost.
	mark := fw.mark()
	fault := time.Now()
	undo := blackhole(t, fw, "renater")
	detected := fw.waitEventAfter(t, mark, 5*time.Second, "uplink-state", map[string]string{"uplink": "renater", "state": "offline"})
	first := f.waitSource(t, backupIP, fault, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	out := f.outage(fault, time.Now())
	det := detected.Sub(fault)
	t.Logf("blackhole on renater: detected after %s (bound interval x down_after + timeout = %s); outage seen by the client %s (first answer through the backup after %s)",
		det.Round(time.Millisecond), blackholeBound, out.Round(time.Millisecond), first.At.Sub(fault).Round(time.Millisecond))
	// The bound is the design; the slack only absorbs a loaded test
	// machine's scheduling (timing targets are in the benchmark).
	if det > blackholeBound+500*time.Millisecond {
		t.Errorf("blackhole detected after %s, bound %s", det, blackholeBound)
	}
	if r := fw.activeRoute(t); !strings.Contains(r, "dev wan1") {
		t.Errorf("TableActive after the blackhole: %q, want the backup", r)
	}

	// A long-lived TCP connection opened during the failover, through the
	// backup.
	conn, err := lab.DialContext(context.Background(), fw.lab.Namespace(lab.RoleClient("peda")), "tcp4",
		fmt.Sprintf("%s:%d", fw.lab.InternetServer(), streamPort))
	if err != nil {
		t.Fatalf("connection during failover: %v", err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	ask := func(what string) (string, error) {
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", what); err != nil {
			return "", err
		}
		line, err := rd.ReadString('\n')
		return strings.TrimSpace(line), err
	}
	if got, err := ask("during"); err != nil || got != backupIP+" during" {
		t.Fatalf("long-lived connection during failover: %q, %v; want it through the backup", got, err)
	}

	// Recovery: back to Renater after up_after good rounds.
	mark = fw.mark()
	healed := time.Now()
	undo()
	back := fw.waitEventAfter(t, mark, 10*time.Second, "uplink-state", map[string]string{"uplink": "renater", "state": "online"})
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-switch", map[string]string{"to": "renater"})
	t.Logf("renater back in service %s after the blackhole ended (up_after 5 x 200ms)", back.Sub(healed).Round(time.Millisecond))
	if r := fw.activeRoute(t); !strings.Contains(r, "dev wan0") {
		t.Errorf("TableActive after recovery: %q, want renater", r)
	}
	// New flows use Renater again...
	g := startFlow(t, fw, "peda")
	g.waitSource(t, renaterIP, time.Time{}, 5*time.Second)
	// ...while the flows that moved to the backup stay there, unbroken.
	if got, err := ask("after"); err != nil || got != backupIP+" after" {
		t.Errorf("long-lived connection after the return to renater: %q, %v; want it alive through the backup", got, err)
	}
	time.Sleep(300 * time.Millisecond)
	recent := f.Replies()
	// At 100 packets/s, a second without an answer means the flow stopped
	// (the bound is loose so a loaded CI machine does not trip it).
	if r := recent[len(recent)-1]; r.Src.String() != backupIP || time.Since(r.At) > time.Second {
		t.Errorf("the UDP flow that moved to the backup stopped or moved after the return: last answer via %s, %s ago", r.Src.String(), time.Since(r.At))
	}
}

func TestUplinkRandomLossCausesNoStateChange(t *testing.T) {
	fw := startUplinkLab(t, readDemo(t), nil)
	fw.waitOnline(t, "renater")
	// 5 % of the packets the Renater ISP forwards are dropped, in both
	// directions: about 10 % of echo exchanges fail.
	nsRun(t, fw.isp("renater"), "nft", "add table inet fault; add chain inet fault drops { type filter hook forward priority 0; }; add rule inet fault drops numgen random mod 100 < 5 counter drop")
	mark := fw.mark()
	soak := 60 * time.Second
	if testing.Short() {
		soak = 10 * time.Second
	}
	f := startFlow(t, fw, "peda")
	time.Sleep(soak)
	f.stop()
	counters := nsRun(t, fw.isp("renater"), "nft", "list", "chain", "inet", "fault", "drops")
	if changes := append(fw.log.find(mark, "uplink-state", nil), fw.log.find(mark, "uplink-switch", nil)...); len(changes) > 0 {
		t.Errorf("state changed under 5%% loss: %v", changes)
	}
	replies := f.Replies()
	t.Logf("%s of 5%% random loss on renater: no state change expected; flow answers %d (%.1f%% lost end to end); ISP counter: %s",
		soak, len(replies), 100*(1-float64(len(replies))/(float64(soak)/float64(10*time.Millisecond))), strings.TrimSpace(grepLines(counters, "counter")))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestUplinkBothDownThenBackupBack(t *testing.T) {
	fw := startUplinkLab(t, readDemo(t), nil)
	fw.waitOnline(t, "renater")
	fw.waitOnline(t, "backup")
	f := startFlow(t, fw, "peda")
	f.waitSource(t, renaterIP, time.Time{}, 5*time.Second)

	mark := fw.mark()
	blackhole(t, fw, "renater")
	undoBackup := blackhole(t, fw, "backup")
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-state", map[string]string{"uplink": "renater", "state": "offline"})
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-state", map[string]string{"uplink": "backup", "state": "offline"})
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-switch", map[string]string{"fallback": "true"})
	time.Sleep(time.Second) // both down for a while; probing goes on

	healed := time.Now()
	undoBackup()
	first := f.waitSource(t, backupIP, healed, 10*time.Second)
	t.Logf("both uplinks down, then the backup back: traffic resumed through it %s later", first.At.Sub(healed).Round(time.Millisecond))
	if r := fw.activeRoute(t); !strings.Contains(r, "dev wan1") {
		t.Errorf("TableActive: %q, want the backup", r)
	}
}

// dhcpBackupConfig turns the demo's backup into a DHCP uplink whose lease
// is kept in dir.
func dhcpBackupConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := readDemo(t)
	static := "    priority: 2\n    address: 192.0.2.6/30\n    gateway: 192.0.2.5\n"
	if !strings.Contains(cfg, static) {
		t.Fatal("demo config: backup uplink block not found")
	}
	return strings.Replace(cfg, static, "    priority: 2\n    addressing: dhcp\n    lease_file: "+filepath.Join(dir, "backup.lease")+"\n", 1)
}

func TestUplinkDHCPLeaseRenewalAndAddressChange(t *testing.T) {
	dir := t.TempDir()
	const lease = 6 * time.Second // T1 3 s, T2 5.25 s
	fw := startUplinkLab(t, dhcpBackupConfig(t, dir), func(s *lab.Spec) {
		for i := range s.Uplinks {
			if s.Uplinks[i].DHCP != nil {
				s.Uplinks[i].DHCP.LeaseTime = lease
			}
		}
	})
	srv := fw.lab.DHCPServer("backup")
	if srv == nil {
		t.Fatal("the lab has no DHCP server for the backup")
	}
	box := fw.lab.Namespace(lab.RoleBox)
	first := srv.Address()
	fw.waitEvent(t, 15*time.Second, "dhcp-lease", leaseOf(first))
	bound := time.Now()
	if a := nsRun(t, box, "ip", "-4", "addr", "show", "dev", "wan1"); !strings.Contains(a, first.String()+"/24") {
		t.Fatalf("wan1 after the lease: %s", a)
	}
	gw := fw.lab.Spec().Uplinks[1].Gateway.String()
	if r := nsRun(t, box, "ip", "-4", "route", "show", "table", "101"); !strings.Contains(r, "default via "+gw+" dev wan1") {
		t.Fatalf("table 101 after the lease: %q", r)
	}

	// Renewal at T1: a unicast REQUEST from the bound address, ACKed.
	deadline := time.Now().Add(lease)
	var renewal *lab.DHCPExchange
	for renewal == nil && time.Now().Before(deadline) {
		for _, ex := range srv.Exchanges() {
			if ex.Renewing && ex.Reply.String() == "ACK" {
				renewal = &ex
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if renewal == nil {
		t.Fatalf("no renewal within the lease; exchanges: %+v", srv.Exchanges())
	}
	t.Logf("renewed %s after binding (T1 = %s)", renewal.Time.Sub(bound).Round(10*time.Millisecond), lease/2)

	// Traffic through the DHCP uplink: Renater loses its carrier.
	f := startFlow(t, fw, "peda")
	carrier(t, fw, "renater", false)
	f.waitSource(t, first.String(), time.Time{}, 10*time.Second)

	// The ISP renumbers: the next renewal is refused, the box discovers
	// the new address, and routes and NAT follow.
	second := netip.MustParseAddr(strings.TrimSuffix(first.String(), ".10") + ".20")
	mark := fw.mark()
	srv.SetAddress(second)
	changed := fw.waitEventAfter(t, mark, 2*lease, "dhcp-lease", leaseOf(second))
	got := f.waitSource(t, second.String(), time.Time{}, 10*time.Second)
	t.Logf("address change %s -> %s: traffic through the new address %s after the new lease",
		first, second, got.At.Sub(changed).Round(time.Millisecond))
	a := nsRun(t, box, "ip", "-4", "addr", "show", "dev", "wan1")
	if !strings.Contains(a, second.String()+"/24") || strings.Contains(a, first.String()+"/") {
		t.Errorf("wan1 after the change: %s", a)
	}
	if r := nsRun(t, box, "ip", "-4", "route", "show", "table", "101"); !strings.Contains(r, "default via "+gw+" dev wan1") {
		t.Errorf("table 101 after the change: %q", r)
	}
	if r := fw.activeRoute(t); !strings.Contains(r, "dev wan1") {
		t.Errorf("TableActive after the change: %q", r)
	}
	if kept := readLease(t, dir); kept.Address.Addr() != second {
		t.Errorf("lease file after the change: %+v", kept)
	}
}

// leaseOf is the dhcp-lease event of address a: the lab's DHCP servers
// hand out addresses in a /24.
func leaseOf(a netip.Addr) map[string]string {
	return map[string]string{"address": netip.PrefixFrom(a, 24).String()}
}

func readLease(t *testing.T, dir string) dhcpclient.Lease {
	t.Helper()
	var l dhcpclient.Lease
	data, err := os.ReadFile(filepath.Join(dir, "backup.lease"))
	if err == nil {
		err = json.Unmarshal(data, &l)
	}
	if err != nil {
		t.Fatalf("lease file: %v", err)
	}
	return l
}

func TestUplinkDHCPRestartAsksForTheSameAddress(t *testing.T) {
	dir := t.TempDir()
	fw := startUplinkLab(t, dhcpBackupConfig(t, dir), nil)
	srv := fw.lab.DHCPServer("backup")
	addr := srv.Address()
	fw.waitEvent(t, 15*time.Second, "dhcp-lease", leaseOf(addr))

	// A crash or power cut: the kept lease is confirmed with INIT-REBOOT,
	// no DISCOVER.
	n := len(srv.Exchanges())
	mark := fw.mark()
	fw.restart(t, syscall.SIGKILL)
	fw.waitEventAfter(t, mark, 15*time.Second, "dhcp-lease", leaseOf(addr))
	ex := srv.Exchanges()[n:]
	if len(ex) == 0 || ex[0].Request.String() != "REQUEST" || ex[0].Renewing || ex[0].Reply.String() != "ACK" || ex[0].Address != addr {
		t.Errorf("after a crash, the server saw %+v; want an INIT-REBOOT REQUEST for %s first", ex, addr)
	}

	// A clean shutdown releases the lease; the next start asks for the
	// same address again.
	n = len(srv.Exchanges())
	mark = fw.mark()
	fw.restart(t, syscall.SIGTERM)
	if kept := readLease(t, dir); !kept.Released || kept.Address.Addr() != addr {
		t.Errorf("lease file after shutdown: %+v; want %s, released", kept, addr)
	}
	fw.waitEventAfter(t, mark, 15*time.Second, "dhcp-lease", leaseOf(addr))
	ex = srv.Exchanges()[n:]
	if len(ex) < 2 || ex[0].Request.String() != "RELEASE" || ex[1].Request.String() != "DISCOVER" {
		t.Errorf("around a clean restart, the server saw %+v; want RELEASE, then DISCOVER", ex)
	}
}

func TestUplinkDNSAndHTTPProbes(t *testing.T) {
	cfg := readDemo(t)
	probe := "    probe:\n      targets: [203.0.113.10]\n"
	if strings.Count(cfg, probe) != 2 {
		t.Fatal("demo config: probe blocks not found")
	}
	cfg = strings.Replace(cfg, probe, probe+"      kind: dns\n", 1)
	i := strings.LastIndex(cfg, probe)
	cfg = cfg[:i] + probe + "      kind: http\n" + cfg[i+len(probe):]
	if !strings.Contains(cfg, "kind: dns") || !strings.Contains(cfg, "kind: http") {
		t.Fatal("test edit did not set the probe kinds")
	}
	fw := startUplinkLab(t, cfg, nil)
	// The lab's internet server answers DNS on 53 and HTTP on 80.
	fw.waitOnline(t, "renater")
	fw.waitOnline(t, "backup")
	mark := fw.mark()
	blackhole(t, fw, "renater")
	blackhole(t, fw, "backup")
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-state", map[string]string{"uplink": "renater", "state": "offline"})
	fw.waitEventAfter(t, mark, 5*time.Second, "uplink-state", map[string]string{"uplink": "backup", "state": "offline"})
}

func TestUplinkBalancedShareNewFlows(t *testing.T) {
	cfg := strings.Replace(readDemo(t), "    priority: 2\n", "", 1) // both priority 1, weight 1
	fw := startUplinkLab(t, cfg, nil)
	fw.waitOnline(t, "renater")
	fw.waitOnline(t, "backup")
	r := fw.activeRoute(t)
	if !strings.Contains(r, "nexthop via 192.0.2.1 dev wan0 weight 1") || !strings.Contains(r, "nexthop via 192.0.2.5 dev wan1 weight 1") {
		t.Fatalf("TableActive with two balanced uplinks: %q", r)
	}
	// New flows (one socket each) spread over both.
	seen := map[string]int{}
	client := fw.lab.Namespace(lab.RoleClient("peda"))
	for i := range 20 {
		conn, err := lab.DialContext(context.Background(), client, "udp4", fmt.Sprintf("%s:%d", fw.lab.InternetServer(), lab.EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write([]byte{0, 0, 0, byte(i)})
		buf := make([]byte, 16)
		n, err := conn.Read(buf)
		conn.Close()
		if err != nil || n != 8 {
			t.Fatalf("flow %d: %v", i, err)
		}
		seen[net.IP(buf[4:8]).String()]++
	}
	t.Logf("20 new flows: %v", seen)
	if seen[renaterIP] == 0 || seen[backupIP] == 0 {
		t.Errorf("new flows did not use both balanced uplinks: %v", seen)
	}
}
