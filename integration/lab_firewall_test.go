package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"passerelle/pkg/config"
	"passerelle/pkg/firewall"
	"passerelle/pkg/lab"
	"passerelle/pkg/timesync"
)

// These tests run the real firmware in a lab and check its firewall with
// real connections: the reachability matrix of every example config
// (testdata/reach/*.txt), DNS enforcement, and reloads under
// traffic.

func exampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../configs/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	return files
}

// Addresses of the simulated tunnel: tailscaled's TUN (tailscale0) in the
// box, its far end in the lab's academy namespace.
var (
	tunnelBoxAddr = netip.MustParsePrefix("100.64.0.1/30")
	tunnelFarAddr = netip.MustParsePrefix("100.64.0.2/30")
)

// fwLab is the firmware running a config in a lab, with what the
// firewall tests add around it.
type fwLab struct {
	*firmware
	academy netip.Addr // address inside the academy prefixes, in the academy namespace
	extra   map[string]bool
}

// labVariant derives, from an example config, one the lab can run: the
// lab's ISPs serve static uplinks only, so a DHCP uplink becomes a static
// one on a lab address. Zones and the firewall section are kept as they
// are. It returns the config text and what was changed.
func labVariant(t *testing.T, name string, data []byte) ([]byte, string) {
	t.Helper()
	switch name {
	case "college":
		// The 4G backup (wwan0, DHCP) becomes a static link.
		old := "    interface: wwan0\n    addressing: dhcp\n"
		if !strings.Contains(string(data), old) {
			t.Fatal("college.yaml changed: no DHCP wwan0 uplink to rewrite")
		}
		return []byte(strings.Replace(string(data), old, "    interface: wwan0\n    address: 192.0.2.2/30\n    gateway: 192.0.2.1\n", 1)),
			"uplink backup4g (wwan0, DHCP) rewritten as static 192.0.2.2/30 via 192.0.2.1"
	}
	return data, "none: the config runs in the lab as is"
}

// startFirewallLab brings up the lab of a config file and the firmware
// in it. Zones too small for the lab's default client (the 100th host)
// get their 5th host as client.
func startFirewallLab(t *testing.T, name, file string) *fwLab {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data, changed := labVariant(t, name, data)
	t.Logf("lab variant of %s: %s", file, changed)
	fw := labFor(t, data, func(spec *lab.Spec) {
		for i, z := range spec.Zones {
			if z.Subnet.Bits() > 24 {
				spec.Zones[i].Client = netip.PrefixFrom(nthAddr(z.Subnet.Addr(), 5), z.Subnet.Bits())
			}
		}
	})
	cfg := fw.cfg
	fl := &fwLab{firmware: fw, extra: map[string]bool{}}
	if cfg.Tunnel.Enabled {
		fl.simulateTunnel(t)
	}
	fl.routeZonesFromInternet(t)
	fw.launch(t, t.TempDir())
	fw.waitEvent(t, 15*time.Second, "config-applied", nil)
	// The probes of the box's own DHCP must not race its start.
	fw.waitDHCPServing(t)
	return fl
}

func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// simulateTunnel stands in for tailscaled: a veth named tailscale0 in the
// box (MTU 1280, like the real TUN) whose far end is in the academy
// namespace, which holds an address of the academy prefixes and routes the
// school's zones back through it (a subnet router without SNAT).
func (fl *fwLab) simulateTunnel(t *testing.T) {
	t.Helper()
	if len(fl.cfg.Tunnel.AcademyPrefixes) == 0 {
		t.Fatal("tunnel enabled without academy prefixes")
	}
	box, acad := fl.lab.Namespace(lab.RoleBox), fl.lab.Namespace(lab.RoleAcademy)
	fl.academy = nthAddr(fl.cfg.Tunnel.AcademyPrefixes[0].Addr(), 10)
	ipCmd(t, "-n", box, "link", "add", firewall.TunnelInterface, "mtu", "1280", "type", "veth", "peer", "name", "ts0", "netns", acad)
	ipCmd(t, "-n", box, "addr", "add", tunnelBoxAddr.String(), "dev", firewall.TunnelInterface)
	ipCmd(t, "-n", box, "link", "set", firewall.TunnelInterface, "up")
	ipCmd(t, "-n", acad, "addr", "add", tunnelFarAddr.String(), "dev", "ts0")
	ipCmd(t, "-n", acad, "link", "set", "ts0", "mtu", "1280", "up")
	ipCmd(t, "-n", acad, "addr", "add", netip.PrefixFrom(fl.academy, 32).String(), "dev", "lo")
	for _, p := range fl.cfg.Tunnel.AcademyPrefixes {
		ipCmd(t, "-n", box, "route", "add", p.String(), "via", tunnelFarAddr.Addr().String(), "dev", firewall.TunnelInterface)
	}
	for _, z := range fl.cfg.Zones {
		ipCmd(t, "-n", acad, "route", "add", z.Subnet.String(), "via", tunnelBoxAddr.Addr().String(), "dev", "ts0")
	}
}

// routeZonesFromInternet makes the internet route the school's private
// subnets to the box through the first uplink's ISP, as a hostile
// neighbour would: the firewall, not the lack of a route, must stop it.
func (fl *fwLab) routeZonesFromInternet(t *testing.T) {
	t.Helper()
	u := fl.cfg.Uplinks[0]
	inet, isp := fl.lab.Namespace(lab.RoleInternet), fl.lab.Namespace(lab.RoleISP(u.Name))
	for _, z := range fl.cfg.Zones {
		ipCmd(t, "-n", inet, "route", "add", z.Subnet.String(), "via", "198.51.100.1")
		ipCmd(t, "-n", isp, "route", "add", z.Subnet.String(), "via", u.Address.Addr().String())
	}
}

// addServer gives a zone's client namespace one more address (a server
// such as the DMZ's web server).
func (fl *fwLab) addServer(t *testing.T, zone string, a netip.Addr) {
	t.Helper()
	key := zone + "@" + a.String()
	if fl.extra[key] {
		return
	}
	z := fl.zone(t, zone)
	ipCmd(t, "-n", fl.lab.Namespace(lab.RoleClient(zone)), "addr", "add", netip.PrefixFrom(a, z.Subnet.Bits()).String(), "dev", "eth0")
	fl.extra[key] = true
}

func (fl *fwLab) zone(t *testing.T, name string) config.Zone {
	t.Helper()
	for _, z := range fl.cfg.Zones {
		if z.Name == name {
			return z
		}
	}
	t.Fatalf("no zone %q in the config", name)
	return config.Zone{}
}

func (fl *fwLab) client(t *testing.T, zone string) netip.Addr {
	t.Helper()
	for _, z := range fl.lab.Spec().Zones {
		if z.Name == zone {
			return z.Client.Addr()
		}
	}
	t.Fatalf("no client for zone %q", zone)
	return netip.Addr{}
}

func (fl *fwLab) uplink(t *testing.T, name string) config.Uplink {
	t.Helper()
	for _, u := range fl.cfg.Uplinks {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no uplink %q", name)
	return config.Uplink{}
}

// reachLine is one line of a reachability table.
type reachLine struct {
	where           string // file:line
	src, dst, probe string
	allow           bool
	at              string // where the answer must come from, if not dst
}

func readReach(t *testing.T, file string) []reachLine {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []reachLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		where := fmt.Sprintf("%s:%d", filepath.Base(file), n)
		if len(f) < 5 || f[3] != "->" || (f[4] != "allow" && f[4] != "deny") || (len(f) != 5 && (len(f) != 7 || f[5] != "at")) {
			t.Fatalf("%s: expected SOURCE DESTINATION PROBE -> allow|deny [at PLACE], got %q", where, line)
		}
		r := reachLine{where: where, src: f[0], dst: f[1], probe: f[2], allow: f[4] == "allow"}
		if len(f) == 7 {
			r.at = f[6]
		}
		out = append(out, r)
	}
	return out
}

// place is a namespace and an address in it.
type place struct {
	ns   string
	addr netip.Addr
	name string // the token that named it, echoed by its test servers
}

// source returns where a probe starts, and the address it must use.
func (fl *fwLab) source(t *testing.T, src string) place {
	t.Helper()
	switch src {
	case config.EndInternet:
		return place{ns: fl.lab.Namespace(lab.RoleInternet), name: src}
	case config.EndTunnel:
		if !fl.academy.IsValid() {
			t.Fatalf("source tunnel: the config has no tunnel")
		}
		return place{ns: fl.lab.Namespace(lab.RoleAcademy), addr: fl.academy, name: src}
	}
	fl.zone(t, src)
	return place{ns: fl.lab.Namespace(lab.RoleClient(src)), name: src}
}

// target resolves a destination token.
func (fl *fwLab) target(t *testing.T, src, dst string) place {
	t.Helper()
	switch {
	case dst == config.EndInternet:
		return place{fl.lab.Namespace(lab.RoleInternet), fl.lab.InternetServer(), dst}
	case dst == config.EndTunnel:
		return place{fl.lab.Namespace(lab.RoleAcademy), fl.academy, dst}
	case dst == config.EndBox:
		box := fl.lab.Namespace(lab.RoleBox)
		switch src {
		case config.EndInternet:
			return place{box, fl.cfg.Uplinks[0].Address.Addr(), dst}
		case config.EndTunnel:
			return place{box, tunnelBoxAddr.Addr(), dst}
		}
		return place{box, fl.zone(t, src).Address, dst}
	case strings.HasPrefix(dst, "uplink:"):
		u := fl.uplink(t, strings.TrimPrefix(dst, "uplink:"))
		return place{fl.lab.Namespace(lab.RoleBox), u.Address.Addr(), dst}
	case strings.Contains(dst, "@"):
		zone, a, _ := strings.Cut(dst, "@")
		addr, err := netip.ParseAddr(a)
		if err != nil {
			t.Fatalf("destination %q: %v", dst, err)
		}
		fl.addServer(t, zone, addr)
		return place{fl.lab.Namespace(lab.RoleClient(zone)), addr, dst}
	}
	return place{fl.lab.Namespace(lab.RoleClient(dst)), fl.client(t, dst), dst}
}

// boxService reports whether a probe goes to one of the firmware's own
// services, which answer for themselves.
func boxService(dst, probe string) bool {
	return dst == config.EndBox && (probe == "udp/53" || probe == "tcp/53" || probe == "udp/123" || probe == "udp/67")
}

// servers are the test servers of one matrix: TCP listeners that send
// their name, UDP sockets that echo with their name in front.
type servers struct {
	started map[string]bool // ns addr proto/port
	named   map[string]bool // same key: the server is ours (checks its name)
	closers []io.Closer
}

func (s *servers) start(t *testing.T, at place, probe string) {
	t.Helper()
	key := at.ns + " " + at.addr.String() + " " + probe
	if s.started[key] {
		return
	}
	s.started[key] = true
	proto, port, _ := strings.Cut(probe, "/")
	addr := net.JoinHostPort(at.addr.String(), port)
	switch proto {
	case "tcp":
		ln, err := lab.Listen(at.ns, "tcp4", addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			t.Logf("%s %s: port taken (a service of the lab or the firmware): connecting is the check", at.name, probe)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		s.closers = append(s.closers, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", at.name)
				c.Close()
			}
		}()
	case "udp":
		pc, err := lab.ListenPacket(at.ns, "udp4", addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			t.Logf("%s %s: port taken: any answer is the check", at.name, probe)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		s.closers = append(s.closers, pc)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(at.name+"|"), buf[:n]...), from)
			}
		}()
	default:
		return
	}
	s.named[key] = true
}

func (s *servers) ours(at place, probe string) bool {
	return s.named[at.ns+" "+at.addr.String()+" "+probe]
}

func (s *servers) close() {
	for _, c := range s.closers {
		c.Close()
	}
}

const probeTimeout = 1500 * time.Millisecond

// dialFrom opens a connection from a namespace, from a given local address
// if valid.
func dialFrom(ctx context.Context, ns string, local netip.Addr, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := lab.RunInNamespace(ns, func() error {
		d := net.Dialer{}
		if local.IsValid() {
			if strings.HasPrefix(network, "tcp") {
				d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
			} else {
				d.LocalAddr = &net.UDPAddr{IP: local.AsSlice()}
			}
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// probe tries one connection and reports whether the firewall let it
// through (to the right place).
func (fl *fwLab) probe(t *testing.T, srv *servers, r reachLine, from, to, at place) (bool, string) {
	ok, detail := fl.try(t, srv, r, from, to, at)
	// The box's firewall never answers with a port unreachable or a reset
	// (it rejects with admin-prohibited, or drops): "connection refused"
	// from the box means the packet passed the firewall and found no
	// socket, a service's own business (NTP served only in some zones).
	if !ok && r.dst == config.EndBox && strings.Contains(detail, "connection refused") {
		return true, "passed the firewall, no service: " + detail
	}
	return ok, detail
}

func (fl *fwLab) try(t *testing.T, srv *servers, r reachLine, from, to, at place) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	proto, port, _ := strings.Cut(r.probe, "/")
	addr := net.JoinHostPort(to.addr.String(), port)
	switch {
	case r.probe == "icmp":
		return pingFrom(from.ns, from.addr, to.addr)
	case r.probe == "udp/67" && r.dst == config.EndBox:
		return dhcpOffer(from.ns)
	case boxService(r.dst, r.probe) && port == "53":
		network := "udp4"
		if proto == "tcp" {
			network = "tcp4"
		}
		c, err := dialFrom(ctx, from.ns, from.addr, network, addr)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		// A query without a question is answered at once (FORMERR), even
		// by a zone whose resolver would have to ask an upstream the lab
		// does not have.
		dc := &dns.Conn{Conn: c}
		m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: dns.Id(), RecursionDesired: true}}
		if err := dc.WriteMsg(m); err != nil {
			return false, err.Error()
		}
		a, err := dc.ReadMsg()
		if err != nil {
			return false, err.Error()
		}
		return true, "DNS answer " + dns.RcodeToString[a.Rcode]
	case boxService(r.dst, r.probe) && port == "123":
		c, err := dialFrom(ctx, from.ns, from.addr, "udp4", addr)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		q := timesync.Packet{Version: 4, Mode: timesync.ModeClient, Transmit: timesync.Timestamp(time.Now().UnixNano() | 1)}
		c.Write(q.Append(nil))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return false, err.Error()
		}
		if _, err := timesync.ParsePacket(buf[:n]); err != nil {
			return false, "not NTP: " + err.Error()
		}
		return true, "NTP answer"
	case proto == "tcp":
		c, err := dialFrom(ctx, from.ns, from.addr, "tcp4", addr)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		if !srv.ours(at, r.probe) {
			return true, "connected"
		}
		c.SetDeadline(time.Now().Add(probeTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return false, "connected, no greeting: " + err.Error()
		}
		if got := strings.TrimSpace(line); got != at.name {
			return false, fmt.Sprintf("connected to %s, not %s", got, at.name)
		}
		return true, "connected to " + at.name
	case proto == "udp":
		c, err := dialFrom(ctx, from.ns, from.addr, "udp4", addr)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		msg := "probe " + r.where
		c.Write([]byte(msg))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return false, err.Error()
		}
		if srv.ours(at, r.probe) && string(buf[:n]) != at.name+"|"+msg {
			return false, fmt.Sprintf("unexpected answer %q", buf[:n])
		}
		return true, "answer from " + at.name
	}
	t.Errorf("%s: unknown probe %q (tcp/PORT, udp/PORT or icmp)", r.where, r.probe)
	return false, ""
}

// pingFrom sends one ICMP echo request and waits for its reply.
func pingFrom(ns string, local, dst netip.Addr) (bool, string) {
	var pc net.PacketConn
	err := lab.RunInNamespace(ns, func() error {
		l := "0.0.0.0"
		if local.IsValid() {
			l = local.String()
		}
		var err error
		pc, err = net.ListenPacket("ip4:icmp", l)
		return err
	})
	if err != nil {
		return false, err.Error()
	}
	defer pc.Close()
	id := int(time.Now().UnixNano()&0xffff) ^ os.Getpid()&0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("passerelle")}}
	b, _ := msg.Marshal(nil)
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return false, err.Error()
	}
	deadline := time.Now().Add(probeTimeout)
	pc.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return false, "no echo reply: " + err.Error()
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst.String() {
			return true, "echo reply"
		}
	}
}

// dhcpOffer asks for a DHCP offer from a zone's client namespace.
func dhcpOffer(ns string) (bool, string) {
	var c *nclient4.Client
	err := lab.RunInNamespace(ns, func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithTimeout(probeTimeout), nclient4.WithRetry(1))
		return err
	})
	if err != nil {
		return false, err.Error()
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*probeTimeout)
	defer cancel()
	offer, err := c.DiscoverOffer(ctx)
	if err != nil {
		return false, err.Error()
	}
	return true, "offer of " + offer.YourIPAddr.String()
}

// TestFirewallReachabilityMatrix runs each example config in the lab and
// tries every line of its table in testdata/reach with a real
// connection. college.yaml runs as a lab variant (see labVariant: its DHCP
// 4G uplink becomes static); ecole.yaml and lycee.yaml run as they are
// (the lycée's /28 DMZ gets its 5th host as the lab client, since it has
// no 100th).
func TestFirewallReachabilityMatrix(t *testing.T) {
	for _, file := range exampleFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			table := filepath.Join("testdata", "reach", name+".txt")
			lines := readReach(t, table)
			fl := startFirewallLab(t, name, file)
			srv := &servers{started: map[string]bool{}, named: map[string]bool{}}
			defer srv.close()
			type job struct {
				r            reachLine
				from, to, at place
			}
			var jobs []job
			for _, r := range lines {
				from, to := fl.source(t, r.src), fl.target(t, r.src, r.dst)
				at := to
				if r.at != "" {
					at = fl.target(t, r.src, r.at)
				}
				if r.probe != "icmp" && !boxService(r.dst, r.probe) {
					srv.start(t, at, r.probe)
				}
				jobs = append(jobs, job{r, from, to, at})
			}
			var wg sync.WaitGroup
			results := make([]string, len(jobs))
			for i, j := range jobs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, detail := fl.probe(t, srv, j.r, j.from, j.to, j.at)
					verdict := map[bool]string{true: "allow", false: "deny"}[ok]
					results[i] = fmt.Sprintf("%-10s %-20s %-9s -> %-5s (%s)", j.r.src, j.r.dst, j.r.probe, verdict, detail)
					if ok != j.r.allow {
						t.Errorf("%s: %s %s %s: got %s (%s), want %s", j.r.where, j.r.src, j.r.dst, j.r.probe, verdict, detail,
							map[bool]string{true: "allow", false: "deny"}[j.r.allow])
					}
				}()
			}
			wg.Wait()
			t.Logf("%d probes:\n%s", len(results), strings.Join(results, "\n"))
		})
	}
}

// firewallShow runs `passerelle firewall show` in the box namespace.
func (fw *firmware) firewallShow(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(bins(t).passerelle, "firewall", "show")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := lab.StartCommand(fw.lab.Namespace(lab.RoleBox), cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("passerelle firewall show: %v: %s", err, errb.String())
	}
	return out.String()
}

var counterRE = regexp.MustCompile(`(?m)^\tcounter (\S+) \{\n\t\tpackets (\d+) bytes (\d+)`)

// counters parses the named counters of `firewall show`.
func counters(t *testing.T, show string) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, c := range counterRE.FindAllStringSubmatch(show, -1) {
		n, _ := strconv.ParseUint(c[2], 10, 64)
		m[c[1]] = n
	}
	if len(m) == 0 {
		t.Fatalf("no counters in:\n%s", show)
	}
	return m
}

// TestFirewallRedirectsOutsideDNSToBox: a client that sets an outside DNS
// server still gets the box's answers. 9.9.9.9 does not exist in the lab:
// any answer comes from the box.
func TestFirewallRedirectsOutsideDNSToBox(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	before := counters(t, fl.firewallShow(t))["dns-redirect"]
	for _, zone := range []string{"peda", "admin", "guest"} {
		ns := fl.lab.Namespace(lab.RoleClient(zone))
		box := fl.zone(t, zone).Address.String() + ":53"
		for _, network := range []string{"udp", "tcp"} {
			direct, err := dnsQuery(t, ns, box, lab.InternetHost, dns.TypeA, network)
			if err != nil {
				t.Fatalf("%s: query the box over %s: %v", zone, network, err)
			}
			viaOutside, err := dnsQuery(t, ns, "9.9.9.9:53", lab.InternetHost, dns.TypeA, network)
			if err != nil {
				t.Errorf("%s: query to an outside server over %s got no answer: %v", zone, network, err)
				continue
			}
			if viaOutside.Rcode != direct.Rcode || fmt.Sprint(viaOutside.Answer) != fmt.Sprint(direct.Answer) {
				t.Errorf("%s over %s: the outside server's answer (%s %v) is not the box's (%s %v)", zone, network,
					dns.RcodeToString[viaOutside.Rcode], viaOutside.Answer, dns.RcodeToString[direct.Rcode], direct.Answer)
			}
			t.Logf("%s over %s: 9.9.9.9 answered %s %v, as the box does", zone, network, dns.RcodeToString[viaOutside.Rcode], viaOutside.Answer)
		}
	}
	if after := counters(t, fl.firewallShow(t))["dns-redirect"]; after < before+6 {
		t.Errorf("dns-redirect counted %d redirected queries, want at least 6", after-before)
	}
}

// TestFirewallRejectsDNSOverTLS: a DoT (853/tcp) connection from a zone
// whose profile protects minors fails at once; from the staff zone (a
// profile without minors) it goes through, so the server is there.
func TestFirewallRejectsDNSOverTLS(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	inet := fl.lab.Namespace(lab.RoleInternet)
	addr := net.JoinHostPort(fl.lab.InternetServer().String(), "853")
	ln, err := lab.Listen(inet, "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func(zone string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		c, err := lab.DialContext(ctx, fl.lab.Namespace(lab.RoleClient(zone)), "tcp4", addr)
		if err == nil {
			c.Close()
		}
		return time.Since(start), err
	}
	for _, zone := range []string{"peda", "guest"} {
		took, err := dial(zone)
		if err == nil {
			t.Errorf("%s: DNS-over-TLS connection to %s went through", zone, addr)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: DoT failed with %v after %s; want a reset (connection refused) at once", zone, err, took)
		}
	}
	if _, err := dial("admin"); err != nil {
		t.Errorf("admin (profile without minors): DoT connection failed: %v", err)
	}
	if n := counters(t, fl.firewallShow(t))["dot-rejected"]; n < 2 {
		t.Errorf("dot-rejected = %d, want at least 2", n)
	}
}

// TestFirewallReloadsLoseNoPacketAndKeepCounters: a 100 packets/s UDP
// flow from a zone to the internet runs through 20 reloads (SIGHUP: every
// component re-applies, the firewall replaces its table each time). Every
// packet must come back, and the zone pair's counter must keep counting
// from where it was.
func TestFirewallReloadsLoseNoPacketAndKeepCounters(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	// 100 packets/s from peda to the lab's echo, on one socket.
	flow, err := lab.StartFlow(fl.lab.Namespace(lab.RoleClient("peda")), fl.lab.InternetServer(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Stop()

	time.Sleep(500 * time.Millisecond) // the flow is established
	start := counters(t, fl.firewallShow(t))["fwd-peda-internet"]
	startReplies := len(flow.Replies())
	reloadsStart := time.Now()
	for range 20 {
		time.Sleep(100 * time.Millisecond) // spread the reloads over the flow
		mark := fl.mark()
		fl.cmd.Process.Signal(syscall.SIGHUP)
		fl.waitEventAfter(t, mark, 10*time.Second, "config-applied", nil)
	}
	reloads := time.Since(reloadsStart)
	time.Sleep(300 * time.Millisecond)
	show := fl.firewallShow(t)
	end := counters(t, show)["fwd-peda-internet"]
	sent := int(flow.Sent())
	time.Sleep(time.Second) // the last replies
	got := map[uint32]bool{}
	for _, r := range flow.Replies() {
		got[r.Seq] = true
	}
	var lost []int
	for s := 1; s <= sent; s++ {
		if !got[uint32(s)] {
			lost = append(lost, s)
		}
	}
	t.Logf("20 reloads in %s; %d packets sent at 100/s, %d lost", reloads.Round(time.Millisecond), sent, len(lost))
	if len(lost) > 0 {
		t.Errorf("%d of %d packets lost during the reloads: %v", len(lost), sent, lost)
	}
	// Every request after the first counter reading was counted, except
	// those that crossed the old table in the instant between a reload's
	// counter read and its commit: a few milliseconds on an idle machine,
	// up to tens on a loaded 2-core one, so at 100 packets/s at most a few
	// per reload (3 allowed each). A counter that did not survive would
	// lose everything before the last reload.
	during := uint64(sent - startReplies)
	counted := end - start
	t.Logf("fwd-peda-internet: %d before the reloads, %d after; %d packets sent in between, %d counted", start, end, during, counted)
	if counted+3*20 < during || counted > during+5 {
		t.Errorf("fwd-peda-internet counted %d of the %d packets sent during the reloads: the counter did not survive", counted, during)
	}
	for _, r := range fl.log.records(fl.from) {
		if r.str("level") == "ERROR" && r.str("component") == "firewall" {
			t.Errorf("the firewall logged an error: %v", r)
		}
	}
}

// TestFirewallDropsSpoofedSources: a client sending with an address that
// is not of its zone (another zone's, or an internet one) is dropped by
// the reverse-path check; its own address goes through.
func TestFirewallDropsSpoofedSources(t *testing.T) {
	fl := startFirewallLab(t, "demo", demoConfig)
	inet := fl.lab.Namespace(lab.RoleInternet)
	addr := net.JoinHostPort(fl.lab.InternetServer().String(), "7001")
	pc, err := lab.ListenPacket(inet, "udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	seen := make(chan string, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seen <- from.(*net.UDPAddr).IP.String() + " " + string(buf[:n]) // masqueraded source, then the payload
		}
	}()
	peda := fl.lab.Namespace(lab.RoleClient("peda"))
	before := counters(t, fl.firewallShow(t))["spoofed"]
	send := func(src netip.Addr) {
		t.Helper()
		c, err := dialFrom(context.Background(), peda, src, "udp4", addr)
		if err != nil {
			t.Fatalf("send from %s: %v", src, err)
		}
		defer c.Close()
		c.Write([]byte("from " + src.String()))
	}
	spoofed := []netip.Addr{netip.MustParseAddr("10.20.0.77"), netip.MustParseAddr("8.8.8.8")}
	for _, a := range spoofed {
		// The client owns the address, as a spoofer would pretend to.
		ipCmd(t, "-n", peda, "addr", "add", a.String()+"/32", "dev", "eth0")
		send(a)
	}
	send(fl.client(t, "peda"))
	select {
	case got := <-seen:
		if !strings.HasSuffix(got, " from "+fl.client(t, "peda").String()) {
			t.Errorf("a spoofed packet reached the internet: %s", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the client's own packet did not reach the internet")
	}
	select {
	case got := <-seen:
		t.Errorf("a spoofed packet reached the internet: %s", got)
	case <-time.After(500 * time.Millisecond):
	}
	if n := counters(t, fl.firewallShow(t))["spoofed"] - before; n < uint64(len(spoofed)) {
		t.Errorf("spoofed counted %d packets, want %d", n, len(spoofed))
	}
}
