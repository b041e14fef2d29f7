package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
	"tailscale.com/types/logger"

	"passerelle/pkg/lab"
	"passerelle/pkg/lab/academy"
)

// Tunnel tests: the firmware's tailscaled against the lab academy (a
// testcontrol coordination server, DERP and STUN on 203.0.113.100, and a
// datacenter tailscaled routing 10.200.0.0/24 with an HTTP service on
// 10.200.0.10 that reports the client address it saw).

// tailscaledBin builds (or finds in bin/, cached by version and tags) the
// trimmed tailscaled and puts it beside the firmware, where the tunnel
// component looks for it.
var tailscaledBin = sync.OnceValues(func() (string, error) {
	target := "linux/" + runtime.GOARCH
	cmd := exec.Command("sh", "tools/tailscaled/build.sh", target)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tools/tailscaled/build.sh: %v\n%s", err, out)
	}
	src, err := filepath.Abs(filepath.Join("..", "bin", "tailscaled-linux-"+runtime.GOARCH))
	if err != nil {
		return "", err
	}
	dst := filepath.Join(binDir, "tailscaled")
	if err := os.Symlink(src, dst); err != nil && !os.IsExist(err) {
		return "", err
	}
	return dst, nil
})

const tunnelConfigTail = `tunnel:
  enabled: true
  control_url: %s
  auth_key_file: %s
  advertise_routes: [10.20.0.0/24]
  academy_prefixes: [%s]
`

// tunnelDNSTail completes tunnelConfigTail with the academy's names.
const tunnelDNSTail = `  academy_domains: [%s]
  academy_resolvers: [%s]
  tailnet_domain: %s
`

// tunnelLab is the demo school with the tunnel on, its lab academy and
// the firmware running.
type tunnelLab struct {
	*firmware
	acad *academy.Academy
	run  string // tailscaled's run directory
	key  string // the auth key file (tunnel.auth_key_file)
}

func startTunnelLab(t *testing.T) *tunnelLab {
	t.Helper()
	return startTunnelLabKey(t, true)
}

// startTunnelLabKey starts the tunnel lab with the academy's key in the
// auth key file, or (withKey false) with no key file: a box not enrolled
// yet. extra are more arguments of passerelle run.
func startTunnelLabKey(t *testing.T, withKey bool, extra ...string) *tunnelLab {
	t.Helper()
	needRoot(t)
	ts, err := tailscaledBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "perm", "tunnel", "authkey")
	cfg := readDemo(t) + fmt.Sprintf(tunnelConfigTail, "https://203.0.113.100:443", keyFile, academy.DefaultPrefix) +
		fmt.Sprintf(tunnelDNSTail, academy.DefaultDomain, academy.DefaultResolver, academy.DefaultTailnetDomain)
	fw := labFor(t, []byte(cfg), nil)
	a, err := academy.Start(academy.Options{Lab: fw.lab, Tailscaled: ts, Dir: filepath.Join(dir, "academy"), Logf: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if err := a.StartRouter(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if withKey {
		if err := os.WriteFile(keyFile, []byte(a.AuthKey()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// tailscaled (a child of the firmware) trusts the lab CA.
	t.Setenv("SSL_CERT_FILE", a.CAFile())
	run := filepath.Join(dir, "run")
	fw.launch(t, filepath.Join(dir, "state"), append([]string{"--tunnel-run-dir", run}, extra...)...)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	tl := &tunnelLab{firmware: fw, acad: a, run: run, key: keyFile}
	if dir := os.Getenv("PASSERELLE_TUNNEL_LOGS"); dir != "" {
		// Both ends' logs, to read a slow failover afterwards.
		t.Cleanup(func() {
			tl.log.mu.Lock()
			_ = os.WriteFile(filepath.Join(dir, "firmware.log"), tl.log.text.Bytes(), 0o644)
			tl.log.mu.Unlock()
			if data, err := os.ReadFile(filepath.Join(filepath.Dir(a.RouterSocket()), "tailscaled.log")); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "datacenter-tailscaled.log"), data, 0o644)
			}
		})
	}
	return tl
}

// fetch GETs the academy service from a zone's client.
func (tl *tunnelLab) fetch(zone string, timeout time.Duration) (string, error) {
	c := lab.HTTPClient(tl.lab.Namespace(lab.RoleClient(zone)))
	c.Timeout = timeout
	resp, err := c.Get(tl.acad.ServiceURL())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitReach waits until the admin client reaches the academy service.
func (tl *tunnelLab) waitReach(t *testing.T, timeout time.Duration) {
	t.Helper()
	var last error
	waitUntil(t, "the admin client reaching the academy service", timeout, func() bool {
		_, last = tl.fetch("admin", time.Second)
		return last == nil
	})
}

// gapMeter measures how long the academy service stays out of reach
// after a fault: the admin client starts a request every 20 ms (each its
// own TCP connection, 1 s timeout, without waiting for the previous one),
// and the gap is the time from the fault to the answer of the first
// request started after it. The fault time must be taken once the fault
// is in effect (after the command that makes it has returned): a request
// started while the command runs can still get through, which is how an
// earlier version of this meter reported a 6 ms gap after a carrier loss.
type gapMeter struct {
	tl   *tunnelLab
	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	ok   [][2]time.Time // start and end of each answered request
}

const (
	gapEvery   = 20 * time.Millisecond
	gapTimeout = time.Second
)

func (tl *tunnelLab) meter() *gapMeter {
	g := &gapMeter{tl: tl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(gapEvery)
		defer tick.Stop()
		for {
			select {
			case <-g.stop:
				g.wg.Wait()
				return
			case <-tick.C:
			}
			g.wg.Go(func() {
				start := time.Now()
				if _, err := tl.fetch("admin", gapTimeout); err == nil {
					g.mu.Lock()
					g.ok = append(g.ok, [2]time.Time{start, time.Now()})
					g.mu.Unlock()
				}
			})
		}
	}()
	return g
}

// gapAfter is the time from fault to the answer of the first request
// started after it (0, false while none came back): exact to about 20 ms.
func (g *gapMeter) gapAfter(fault time.Time) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var first time.Time
	for _, r := range g.ok {
		if r[0].After(fault) && (first.IsZero() || r[1].Before(first)) {
			first = r[1]
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(fault), true
}

func (g *gapMeter) wait(t *testing.T, fault time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	var gap time.Duration
	waitUntil(t, "the academy service answering again", timeout, func() bool {
		var ok bool
		gap, ok = g.gapAfter(fault)
		return ok
	})
	return gap
}

func (g *gapMeter) close() { close(g.stop); <-g.done }

// tailscaledPID finds the firmware's tailscaled by its socket argument.
func (tl *tunnelLab) tailscaledPID(t *testing.T) int {
	t.Helper()
	want := "--socket=" + filepath.Join(tl.run, "tailscaled.sock")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), want) {
			return pid
		}
	}
	t.Fatal("the firmware's tailscaled is not running")
	return 0
}

// path is the tunnel's path in its latest state or path event.
func (tl *tunnelLab) path() string {
	path, _ := tl.pathSince(0)
	return path
}

// pathSince is the tunnel's path as last reported after mark, and the
// record that reported it: a path change is a tunnel-path event while the
// tunnel stays up, or the path of a tunnel-state up event when the change
// took the tunnel down first (a blocked direct path fails the pings before
// the relay takes over).
func (tl *tunnelLab) pathSince(mark int) (string, record) {
	var path string
	var last record
	for _, r := range tl.log.records(mark) {
		if r.str("event") == "tunnel-path" || (r.str("event") == "tunnel-state" && r.str("state") == "up") {
			path, last = r.str("path"), r
		}
	}
	return path, last
}

func TestTunnelAcademy(t *testing.T) {
	tl := startTunnelLab(t)
	up := tl.waitRecord(t, 0, 90*time.Second, "tunnel-state", map[string]string{"state": "up"})
	t.Logf("tunnel up: path %s via %s peer %s", up.str("path"), up.str("via"), up.str("peer"))
	if up.str("via") != "renater" {
		t.Errorf("the tunnel rides %q, want renater", up.str("via"))
	}

	t.Run("UplinksShowOnlyTailscaledPort", func(t *testing.T) {
		tl.scanUplinks(t)
	})

	t.Run("TailnetSourcesOnlyFromTunnel", func(t *testing.T) {
		tl.tailnetSpoof(t)
	})

	t.Run("AdminReachesDatacenterWithItsOwnAddress", func(t *testing.T) {
		tl.waitReach(t, 20*time.Second)
		body, err := tl.fetch("admin", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen := tl.acad.Seen()
		want := netip.MustParseAddr("10.20.0.100")
		if len(seen) == 0 || seen[len(seen)-1] != want {
			t.Errorf("the academy saw %v, want the client's own address %s (no SNAT); answer %q", seen, want, body)
		}
	})

	t.Run("AcademyNamesResolvedThroughTunnel", func(t *testing.T) {
		// The academy's domain goes to its resolver (10.200.0.53, behind
		// the tunnel), the tailnet's to the box's tailscaled.
		var dc netip.Addr
		for _, n := range tl.acad.Control().AllNodes() {
			if n.Hostinfo.Valid() && n.Hostinfo.Hostname() == "academy-dc" && len(n.Addresses) > 0 {
				dc = n.Addresses[0].Addr()
			}
		}
		if !dc.IsValid() {
			t.Fatal("the datacenter router has no tailnet address")
		}
		for name, want := range map[string]netip.Addr{
			tl.acad.IntranetName():                  academy.DefaultService,
			"academy-dc." + tl.acad.TailnetDomain(): dc,
		} {
			var got []netip.Addr
			var err error
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, err = tl.lookupA("admin", name)
				if err == nil && len(got) > 0 {
					break
				}
				if time.Now().After(deadline) {
					d, derr := tl.lookupAt(tl.lab.Namespace(lab.RoleBox), "100.100.100.100:53", name)
					t.Fatalf("%s not resolved by the box: %v %v (tailscaled's resolver asked from the box: %v %v)", name, got, err, d, derr)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("%s: the box answered %v, want %s", name, got, want)
			}
		}
		if got, err := tl.lookupA("admin", "nothing."+tl.acad.Domain()); err == nil || !strings.Contains(err.Error(), "NXDOMAIN") {
			t.Errorf("nothing.%s: %v %v, want the academy resolver's NXDOMAIN", tl.acad.Domain(), got, err)
		}
	})

	t.Run("PedagogicalAndGuestCannot", func(t *testing.T) {
		for _, zone := range []string{"peda", "guest"} {
			if body, err := tl.fetch(zone, 2*time.Second); err == nil {
				t.Errorf("%s client reached the academy service: %q", zone, body)
			}
		}
	})

	t.Run("TailscaledKilledIsRestarted", func(t *testing.T) {
		g := tl.meter()
		defer g.close()
		time.Sleep(500 * time.Millisecond)
		pid := tl.tailscaledPID(t)
		mark := tl.mark()
		fault := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		tl.waitEventAfter(t, mark, 5*time.Second, "service-restart", map[string]string{"service": "tailscaled"})
		gap := g.wait(t, fault, 60*time.Second)
		t.Logf("tailscaled killed: the academy service answered again after a gap of %s", gap.Round(time.Millisecond))
		fmt.Printf("tunnel: tailscaled killed → gap %s\n", gap.Round(time.Millisecond))
		if pid2 := tl.tailscaledPID(t); pid2 == pid {
			t.Errorf("tailscaled still has pid %d", pid)
		}
	})

	t.Run("RenaterCarrierLossFallsBackToBackup", func(t *testing.T) {
		tl.waitReach(t, 30*time.Second)
		g := tl.meter()
		defer g.close()
		time.Sleep(500 * time.Millisecond)
		mark := tl.mark()
		issued := time.Now()
		carrier(t, tl.firmware, "renater", false)
		fault := time.Now() // the box's wan0 has lost its carrier
		gap := g.wait(t, fault, 60*time.Second)
		t.Logf("ip link set took %s: the gap is at most %s", fault.Sub(issued).Round(time.Millisecond), (gap + fault.Sub(issued)).Round(time.Millisecond))
		sw := tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-uplink", map[string]string{"via": "the active uplink"})
		// A failover restarts tailscaled: a running one keeps advertising
		// Renater's address, and the academy keeps answering to it.
		tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-restart", map[string]string{"why": "failover"})
		t.Logf("Renater carrier lost: tunnel moved to the backup %s after the fault; the academy service answered again after a gap of %s",
			sw.Sub(fault).Round(time.Millisecond), gap.Round(time.Millisecond))
		fmt.Printf("tunnel: Renater carrier loss → gap %s\n", gap.Round(time.Millisecond))

		mark = tl.mark()
		carrier(t, tl.firmware, "renater", true)
		tl.waitEventAfter(t, mark, 30*time.Second, "tunnel-uplink", map[string]string{"via": "renater"})
		tl.waitReach(t, 30*time.Second)
	})

	t.Run("RenaterBlackholeFallsBackToBackup", func(t *testing.T) {
		tl.waitReach(t, 30*time.Second)
		g := tl.meter()
		defer g.close()
		time.Sleep(500 * time.Millisecond)
		mark := tl.mark()
		undo := blackhole(t, tl.firmware, "renater")
		fault := time.Now() // Renater's ISP drops everything it forwards
		gap := g.wait(t, fault, 60*time.Second)
		sw := tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-uplink", map[string]string{"via": "the active uplink"})
		t.Logf("Renater blackholed: tunnel moved to the backup %s after the fault; the academy service answered again after a gap of %s",
			sw.Sub(fault).Round(time.Millisecond), gap.Round(time.Millisecond))
		fmt.Printf("tunnel: Renater blackhole → gap %s\n", gap.Round(time.Millisecond))

		mark = tl.mark()
		undo()
		healed := time.Now()
		back := tl.waitEventAfter(t, mark, 30*time.Second, "tunnel-uplink", map[string]string{"via": "renater"})
		tl.waitReach(t, 30*time.Second)
		t.Logf("Renater back: the tunnel returned to it %s after the blackhole ended", back.Sub(healed).Round(time.Millisecond))
		// The tunnel's packets leave through Renater again.
		before := ifBytes(t, tl.isp("renater"), "box")
		for range 20 {
			if _, err := tl.fetch("admin", 2*time.Second); err != nil {
				t.Fatalf("after Renater's return: %v", err)
			}
		}
		if after := ifBytes(t, tl.isp("renater"), "box"); after-before < 20*500 {
			t.Errorf("20 requests through the tunnel moved %d bytes into Renater's ISP: the tunnel does not ride Renater", after-before)
		}
	})

	t.Run("DirectUDPBlockedGoesRelayed", func(t *testing.T) {
		waitUntil(t, "a direct path to the academy", 60*time.Second, func() bool { return tl.path() == "direct" })
		mark := tl.mark()
		inet := tl.lab.Namespace(lab.RoleInternet)
		// The datacenter's WireGuard may use either of its addresses (its
		// transit address or 203.0.113.100, whichever endpoint the peers
		// settled on): UDP to and from both is dropped, but STUN (3478);
		// DERP is TCP and stays reachable.
		nsRun(t, inet, "nft", "add table inet nodirect; add chain inet nodirect f { type filter hook forward priority 0; policy accept; }; "+
			"add rule inet nodirect f ip saddr { 198.51.100.254, 203.0.113.100 } udp sport != 3478 drop; "+
			"add rule inet nodirect f ip daddr { 198.51.100.254, 203.0.113.100 } udp dport != 3478 drop")
		defer nsRun(t, inet, "nft", "delete table inet nodirect")
		waitUntil(t, "the tunnel's path reported as relayed", 90*time.Second, func() bool {
			path, _ := tl.pathSince(mark)
			return path == "relayed"
		})
		_, rec := tl.pathSince(mark)
		t.Logf("path now relayed through %s (%s event)", rec.str("relay"), rec.str("event"))
		tl.waitReach(t, 30*time.Second)
		if _, err := tl.fetch("admin", 2*time.Second); err != nil {
			t.Fatalf("relayed: %v", err)
		}
	})
}

// A port scanner for the lab: non-blocking sockets opened inside a
// namespace, from many source addresses so that per-source limits (the
// firewall's SYN meter, the kernel's per-peer ICMP rate limit) never hide
// an answer.

// probeResult is what a probe got back.
type probeResult int

const (
	probeSilent   probeResult = iota // nothing within the timeout
	probeAnswered                    // TCP: SYN-ACK (open); UDP: a datagram back
	probeRefused                     // TCP: RST; UDP: ICMP port unreachable (or another ICMP error)
)

func (r probeResult) String() string {
	return [...]string{"silent", "answered", "refused"}[r]
}

// scanSpec is one scan: ports of dst, probed from the addresses of srcs
// (each source sends at most one probe per every), each probe given
// timeout to be answered. An invalid srcs lets the kernel pick the source.
type scanSpec struct {
	ns      string
	proto   string // "tcp" or "udp"
	srcs    netip.Prefix
	dst     netip.Addr
	ports   []uint16
	every   time.Duration
	timeout time.Duration
	payload func(port uint16) []byte // UDP only
}

type probe struct {
	fd   int
	port uint16
	at   time.Time
}

// scan runs a scan and returns the result of every port. It runs on one
// thread inside the namespace: the sockets are created there, and
// non-blocking connects need no goroutine each.
func scan(s scanSpec) (map[uint16]probeResult, error) {
	res := make(map[uint16]probeResult, len(s.ports))
	nsrc := 1
	var base netip.Addr
	if s.srcs.IsValid() {
		nsrc = 1<<(32-s.srcs.Bits()) - 2
		base = s.srcs.Masked().Addr()
	}
	var pending []probe
	reap := func(all bool) {
		now := time.Now()
		i := 0
		for ; i < len(pending); i++ {
			p := pending[i]
			if !all && now.Sub(p.at) < s.timeout {
				break
			}
			res[p.port] = s.outcome(p.fd)
			unix.Close(p.fd)
		}
		pending = pending[i:]
	}
	err := lab.RunInNamespace(s.ns, func() error {
		start := time.Now()
		for i, port := range s.ports {
			if i%nsrc == 0 && i > 0 {
				// A new round: every source has sent one probe.
				next := start.Add(time.Duration(i/nsrc) * s.every)
				for time.Now().Before(next) {
					reap(false)
					time.Sleep(time.Millisecond)
				}
			}
			typ := unix.SOCK_STREAM
			if s.proto == "udp" {
				typ = unix.SOCK_DGRAM
			}
			fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			pending = append(pending, probe{fd: fd, port: port, at: time.Now()})
			if s.srcs.IsValid() {
				src := base
				for range 1 + i%nsrc {
					src = src.Next()
				}
				if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
					return fmt.Errorf("bind %s: %w", src, err)
				}
			}
			sa := &unix.SockaddrInet4{Port: int(port), Addr: s.dst.As4()}
			if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return fmt.Errorf("connect %s:%d: %w", s.dst, port, err)
			}
			if s.proto == "udp" {
				if _, err := unix.Write(fd, s.payload(port)); err != nil {
					return fmt.Errorf("send to %s:%d: %w", s.dst, port, err)
				}
			}
			reap(false)
		}
		time.Sleep(s.timeout)
		reap(true)
		return nil
	})
	for _, p := range pending {
		unix.Close(p.fd)
	}
	return res, err
}

// outcome reads a probe's socket after its timeout.
func (s scanSpec) outcome(fd int) probeResult {
	if s.proto == "udp" {
		buf := make([]byte, 1500)
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		switch {
		case err == nil && n >= 0:
			return probeAnswered
		case errors.Is(err, unix.EAGAIN):
			return probeSilent
		default: // ECONNREFUSED: ICMP port unreachable; others: ICMP errors
			return probeRefused
		}
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
		return probeRefused // RST (ECONNREFUSED) or an ICMP error
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return probeAnswered
	}
	return probeSilent
}

// udpPayload is a plausible first datagram for the usual services (a DNS
// query, an NTP request), garbage for the others.
func udpPayload(port uint16) []byte {
	switch port {
	case 53, 5353, 5355:
		return []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 0, 0, 1, 0, 1}
	case 123:
		b := make([]byte, 48)
		b[0] = 0x23 // NTPv4 client
		return b
	}
	return []byte("passerelle port scan\n")
}

// usualUDPPorts are the UDP services a scanner tries first.
var usualUDPPorts = []uint16{7, 9, 19, 53, 67, 68, 69, 111, 123, 137, 138, 161, 162, 500, 514, 520, 623, 1194,
	1701, 1900, 3478, 4500, 5060, 5353, 5355, 11211, 51820}

// scanObserver is an nftables table in the box namespace that records the
// destination ports of probes from a source prefix twice: at the input
// hook before the firmware's filter (pre: the probe reached the box, past
// the reverse-path check) and after it (post: the firewall accepted it).
// A base chain's drop is final, an accept lets the packet on to the next
// base chain of the hook: post holds exactly what the firewall let in.
type scanObserver struct {
	t  *testing.T
	ns string
}

func observeScan(t *testing.T, ns string, srcs netip.Prefix) *scanObserver {
	t.Helper()
	var b strings.Builder
	b.WriteString("add table inet scanobs\n")
	for _, set := range []string{"tcp_pre", "tcp_post", "udp_pre", "udp_post"} {
		fmt.Fprintf(&b, "add set inet scanobs %s { type inet_service; size 65536; flags dynamic; }\n", set)
	}
	for _, c := range []struct {
		name string
		prio int
	}{{"pre", -1000}, {"post", 1000}} {
		fmt.Fprintf(&b, "add chain inet scanobs %s { type filter hook input priority %d; policy accept; }\n", c.name, c.prio)
		fmt.Fprintf(&b, "add rule inet scanobs %s ip saddr %s tcp flags syn add @tcp_%s { tcp dport }\n", c.name, srcs, c.name)
		fmt.Fprintf(&b, "add rule inet scanobs %s ip saddr %s meta l4proto udp add @udp_%s { udp dport }\n", c.name, srcs, c.name)
	}
	nsRun(t, ns, "nft", b.String())
	o := &scanObserver{t: t, ns: ns}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", ns, "nft", "delete table inet scanobs").Run() })
	return o
}

// ports returns the ports recorded in one of the sets.
func (o *scanObserver) ports(set string) map[uint16]bool {
	o.t.Helper()
	out := nsRun(o.t, o.ns, "nft", "-j", "list", "set", "inet", "scanobs", set)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		o.t.Fatalf("nft -j list set %s: %v", set, err)
	}
	ports := map[uint16]bool{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Elem []json.RawMessage `json:"elem"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			o.t.Fatal(err)
		}
		for _, e := range s.Elem {
			var n uint16
			if json.Unmarshal(e, &n) != nil {
				var w struct {
					Elem struct {
						Val uint16 `json:"val"`
					} `json:"elem"`
				}
				if err := json.Unmarshal(e, &w); err != nil {
					o.t.Fatalf("set %s: element %s", set, e)
				}
				n = w.Elem.Val
			}
			ports[n] = true
		}
	}
	return ports
}

// nftCounter reads a named counter's packets in the firmware's table.
func nftCounter(t *testing.T, ns, name string) uint64 {
	t.Helper()
	out := nsRun(t, ns, "nft", "list", "counter", "inet", "passerelle", name)
	f := strings.Fields(out[strings.Index(out, "packets"):])
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		t.Fatalf("counter %s: %q", name, out)
	}
	return n
}

// ifBytes is the bytes an interface of a namespace has received.
func ifBytes(t *testing.T, ns, link string) uint64 {
	t.Helper()
	out := strings.TrimSpace(nsRun(t, ns, "cat", "/sys/class/net/"+link+"/statistics/rx_bytes"))
	n, err := strconv.ParseUint(out, 10, 64)
	if err != nil {
		t.Fatalf("rx_bytes of %s: %q", link, out)
	}
	return n
}

// scanUplinks scans each uplink address of the box from its ISP: every
// TCP port, and the usual UDP ports plus tailscaled's.
//
// The criterion. The firewall drops what it refuses without a word, and
// tailscaled ignores datagrams that are not WireGuard or disco from a
// known peer: seen from outside, tailscaled's open port and a filtered one
// are both silent. So the verdict is read where it is made, with an
// observer table in the box (scanObserver): a probe recorded before the
// firmware's input filter reached the box; one recorded after it was
// accepted. The test requires that every probe reached the box (else the
// scan proves nothing about the missing ones), that the firewall accepted
// udp/41641 and nothing else, and, from outside, that no probe got any
// answer at all: no SYN-ACK, no RST, no datagram, no ICMP unreachable.
// For udp/41641 the absence of an ICMP port unreachable after the firewall
// let the probe in is what shows a socket (tailscaled's) received it.
//
// Probes come from a /22 of source addresses, each source sending at most
// one probe per 60 ms: under the firewall's per-source SYN budget (20/s),
// which would otherwise drop probes before the port is looked at (its
// counter, syn-flood, must not move), and under the kernel's per-peer ICMP
// rate limit. A probe gets 250 ms (TCP) or 500 ms (UDP) to be answered: the
// lab's round trip is under a millisecond. The scanner is checked first on
// the lab's internet server, which has no firewall: an open port, a closed
// port and an ICMP unreachable must all be seen.
func (tl *tunnelLab) scanUplinks(t *testing.T) {
	t.Helper()
	ctl := func(proto string, ports []uint16, want []probeResult) {
		t.Helper()
		res, err := scan(scanSpec{ns: tl.isp("renater"), proto: proto, dst: tl.lab.InternetServer(), ports: ports,
			every: time.Millisecond, timeout: 300 * time.Millisecond, payload: udpPayload})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ports {
			if res[p] != want[i] {
				t.Fatalf("scanner check: %s/%d of the internet server is %s, want %s", proto, p, res[p], want[i])
			}
		}
	}
	ctl("tcp", []uint16{80, 1}, []probeResult{probeAnswered, probeRefused})
	ctl("udp", []uint16{lab.EchoPort, 9}, []probeResult{probeAnswered, probeRefused})

	box := tl.lab.Namespace(lab.RoleBox)
	srcs := netip.MustParsePrefix("198.18.0.0/22")
	obs := observeScan(t, box, srcs)
	var allTCP []uint16
	for p := 1; p <= 65535; p++ {
		allTCP = append(allTCP, uint16(p))
	}
	udpPorts := append(slices.Clone(usualUDPPorts), uint16(tunnelPort))
	for _, u := range []struct {
		uplink string
		addr   netip.Addr
	}{{"renater", netip.MustParseAddr(renaterIP)}, {"backup", netip.MustParseAddr(backupIP)}} {
		isp := tl.isp(u.uplink)
		nsRun(t, isp, "ip", "addr", "add", srcs.String(), "dev", "lo")
		synFlood := nftCounter(t, box, "syn-flood")
		start := time.Now()
		tcp, err := scan(scanSpec{ns: isp, proto: "tcp", srcs: srcs, dst: u.addr, ports: allTCP,
			every: 60 * time.Millisecond, timeout: 250 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		udp, err := scan(scanSpec{ns: isp, proto: "udp", srcs: srcs, dst: u.addr, ports: udpPorts,
			every: time.Millisecond, timeout: 500 * time.Millisecond, payload: udpPayload})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		nsRun(t, isp, "ip", "addr", "del", srcs.String(), "dev", "lo")

		tcpPre, tcpPost, udpPre, udpPost := obs.ports("tcp_pre"), obs.ports("tcp_post"), obs.ports("udp_pre"), obs.ports("udp_post")
		t.Logf("%s (%s): %d TCP and %d UDP ports scanned in %s; reached the box: %d TCP, %d UDP; accepted: TCP %v, UDP %v",
			u.uplink, u.addr, len(allTCP), len(udpPorts), took.Round(time.Millisecond), len(tcpPre), len(udpPre), sorted(tcpPost), sorted(udpPost))
		if len(tcpPre) != len(allTCP) {
			t.Errorf("%s: only %d of %d TCP probes reached the box's input", u.uplink, len(tcpPre), len(allTCP))
		}
		if len(tcpPost) != 0 {
			t.Errorf("%s: the firewall accepted TCP ports %v", u.uplink, sorted(tcpPost))
		}
		if d := nftCounter(t, box, "syn-flood") - synFlood; d != 0 {
			t.Errorf("%s: the SYN budget dropped %d probes: the scan was too fast to judge the ports", u.uplink, d)
		}
		for _, p := range udpPorts {
			if !udpPre[p] {
				t.Errorf("%s: the UDP probe of port %d did not reach the box", u.uplink, p)
			}
		}
		if len(udpPost) != 1 || !udpPost[tunnelPort] {
			t.Errorf("%s: the firewall accepted UDP ports %v, want only %d (tailscaled)", u.uplink, sorted(udpPost), tunnelPort)
		}
		for proto, res := range map[string]map[uint16]probeResult{"tcp": tcp, "udp": udp} {
			var answered []string
			for p, r := range res {
				if r != probeSilent {
					answered = append(answered, fmt.Sprintf("%s/%d %s", proto, p, r))
				}
			}
			if len(answered) > 0 {
				slices.Sort(answered)
				t.Errorf("%s: probes answered from outside: %v", u.uplink, answered)
			}
		}
		obs.flush()
	}
}

// tunnelPort is tailscaled's WireGuard port (tunnel.Port).
const tunnelPort = 41641

func sorted(m map[uint16]bool) []uint16 {
	var out []uint16
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (o *scanObserver) flush() {
	o.t.Helper()
	for _, set := range []string{"tcp_pre", "tcp_post", "udp_pre", "udp_post"} {
		nsRun(o.t, o.ns, "nft", "flush", "set", "inet", "scanobs", set)
	}
}

// tailnetSpoof sends probes with tailnet source addresses (100.64.0.0/10)
// from the backup's ISP (a 4G carrier's CGNAT space) and from the admin
// zone: the firewall accepts none of them, udp/41641 included.
func (tl *tunnelLab) tailnetSpoof(t *testing.T) {
	box := tl.lab.Namespace(lab.RoleBox)
	srcs := netip.MustParsePrefix("100.99.0.0/22")
	obs := observeScan(t, box, srcs)
	before := nftCounter(t, box, "cgnat-spoofed") + nftCounter(t, box, "spoofed")
	for _, from := range []struct{ ns, what string }{
		{tl.isp("backup"), "the backup's ISP"},
		{tl.lab.Namespace(lab.RoleClient("admin")), "the admin zone"},
	} {
		nsRun(t, from.ns, "ip", "addr", "add", srcs.String(), "dev", "lo")
		for _, dst := range []string{backupIP, "10.20.0.1"} {
			_, err := scan(scanSpec{ns: from.ns, proto: "udp", srcs: srcs, dst: netip.MustParseAddr(dst),
				ports: []uint16{tunnelPort, 53, 123}, every: time.Millisecond, timeout: 200 * time.Millisecond, payload: udpPayload})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := scan(scanSpec{ns: from.ns, proto: "tcp", srcs: srcs, dst: netip.MustParseAddr(dst),
				ports: []uint16{53, 80, 443}, every: time.Millisecond, timeout: 200 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
		}
		nsRun(t, from.ns, "ip", "addr", "del", srcs.String(), "dev", "lo")
		if acc := sorted(obs.ports("udp_post")); len(acc) > 0 {
			t.Errorf("from %s, tailnet source addresses: the firewall accepted UDP ports %v", from.what, acc)
		}
		if acc := sorted(obs.ports("tcp_post")); len(acc) > 0 {
			t.Errorf("from %s, tailnet source addresses: the firewall accepted TCP ports %v", from.what, acc)
		}
	}
	after := nftCounter(t, box, "cgnat-spoofed") + nftCounter(t, box, "spoofed")
	t.Logf("tailnet sources dropped: cgnat-spoofed %d, spoofed %d", nftCounter(t, box, "cgnat-spoofed"), nftCounter(t, box, "spoofed"))
	if after-before < 12 {
		t.Errorf("the drop counters grew by %d for 24 probes: the probes may not have reached the box", after-before)
	}
}

// lookupA asks the box's resolver of a zone for name's A records, from the
// zone's client.
func (tl *tunnelLab) lookupA(zone, name string) ([]netip.Addr, error) {
	ns := tl.lab.Namespace(lab.RoleClient(zone))
	var server string
	for _, z := range tl.cfg.Zones {
		if z.Name == zone {
			server = netip.AddrPortFrom(z.Address, 53).String()
		}
	}
	return tl.lookupAt(ns, server, name)
}

// lookupAt asks a DNS server for name's A records from a namespace.
func (tl *tunnelLab) lookupAt(ns, server, name string) ([]netip.Addr, error) {
	c, err := lab.DialContext(context.Background(), ns, "udp4", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	co := &dns.Conn{Conn: c}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			out = append(out, ip)
		}
	}
	return out, nil
}
