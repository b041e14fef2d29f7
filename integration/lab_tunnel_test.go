package integration

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// tunnelLab is the demo school with the tunnel on, its lab academy and
// the firmware running.
type tunnelLab struct {
	*firmware
	acad *academy.Academy
	run  string // tailscaled's run directory
}

func startTunnelLab(t *testing.T) *tunnelLab {
	t.Helper()
	needRoot(t)
	ts, err := tailscaledBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "perm", "tunnel", "authkey")
	cfg := readDemo(t) + fmt.Sprintf(tunnelConfigTail, "https://203.0.113.100:443", keyFile, academy.DefaultPrefix)
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
	if err := os.WriteFile(keyFile, []byte(a.AuthKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// tailscaled (a child of the firmware) trusts the lab CA.
	t.Setenv("SSL_CERT_FILE", a.CAFile())
	run := filepath.Join(dir, "run")
	fw.launch(t, filepath.Join(dir, "state"), "--tunnel-run-dir", run)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	return &tunnelLab{firmware: fw, acad: a, run: run}
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

// gapMeter fetches the academy service from the admin client every
// 100 ms and measures the longest time without an answer.
type gapMeter struct {
	tl   *tunnelLab
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	ok   [][2]time.Time // start and end of each answered request
}

func (tl *tunnelLab) meter() *gapMeter {
	g := &gapMeter{tl: tl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			start := time.Now()
			if _, err := tl.fetch("admin", 500*time.Millisecond); err == nil {
				g.mu.Lock()
				g.ok = append(g.ok, [2]time.Time{start, time.Now()})
				g.mu.Unlock()
			}
			if d := 100*time.Millisecond - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
	}()
	return g
}

// gapAfter is the time from fault to the answer of the first request
// sent after it (0, false while none came back). Requests go every 100 ms
// with a 500 ms timeout: the gap is exact to about 100 ms.
func (g *gapMeter) gapAfter(fault time.Time) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.ok {
		if r[0].After(fault) {
			return r[1].Sub(fault), true
		}
	}
	return 0, false
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
	path := ""
	for _, r := range tl.log.records(0) {
		if r.str("event") == "tunnel-path" || (r.str("event") == "tunnel-state" && r.str("state") == "up") {
			path = r.str("path")
		}
	}
	return path
}

func TestTunnelAcademy(t *testing.T) {
	tl := startTunnelLab(t)
	up := tl.waitRecord(t, 0, 90*time.Second, "tunnel-state", map[string]string{"state": "up"})
	t.Logf("tunnel up: path %s via %s peer %s", up.str("path"), up.str("via"), up.str("peer"))
	if up.str("via") != "renater" {
		t.Errorf("the tunnel rides %q, want renater", up.str("via"))
	}

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
		fault := time.Now()
		carrier(t, tl.firmware, "renater", false)
		gap := g.wait(t, fault, 60*time.Second)
		t.Logf("Renater carrier lost: the academy service answered again after a gap of %s", gap.Round(time.Millisecond))
		fmt.Printf("tunnel: Renater carrier loss → gap %s\n", gap.Round(time.Millisecond))
		tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-uplink", map[string]string{"via": "the active uplink"})

		mark = tl.mark()
		carrier(t, tl.firmware, "renater", true)
		tl.waitEventAfter(t, mark, 30*time.Second, "tunnel-uplink", map[string]string{"via": "renater"})
		tl.waitReach(t, 30*time.Second)
	})

	t.Run("DirectUDPBlockedGoesRelayed", func(t *testing.T) {
		waitUntil(t, "a direct path to the academy", 60*time.Second, func() bool { return tl.path() == "direct" })
		mark := tl.mark()
		inet := tl.lab.Namespace(lab.RoleInternet)
		// The datacenter's WireGuard leaves from its transit address;
		// DERP (TCP) and STUN stay reachable on 203.0.113.100.
		nsRun(t, inet, "nft", "add table inet nodirect; add chain inet nodirect f { type filter hook forward priority 0; policy accept; }; "+
			"add rule inet nodirect f meta l4proto udp ip saddr 198.51.100.254 drop; add rule inet nodirect f meta l4proto udp ip daddr 198.51.100.254 drop")
		defer nsRun(t, inet, "nft", "delete table inet nodirect")
		rec := tl.waitRecord(t, mark, 90*time.Second, "tunnel-path", map[string]string{"path": "relayed"})
		t.Logf("path now relayed through %s", rec.str("relay"))
		tl.waitReach(t, 30*time.Second)
		if _, err := tl.fetch("admin", 2*time.Second); err != nil {
			t.Fatalf("relayed: %v", err)
		}
	})
}
