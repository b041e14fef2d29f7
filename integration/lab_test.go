package integration

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

// These tests run the real firmware binary in the box namespace of a lab
// built from the config, and check what a client sees.

// firmware is one `passerelle run` in a lab: the running process (replaced
// by restart, which keeps the log) and the lab around it.
type firmware struct {
	*proc
	lab  *lab.Lab
	cfg  *config.Config
	path string // config file the daemon reads
	// stateDir is the daemon's /perm, kept across restarts, and extra the
	// further arguments of passerelle run (a restart keeps both: a
	// tunnel run directory, say, stays off the host's /run).
	stateDir string
	extra    []string
}

func startFirmware(t *testing.T, configFile string) *firmware {
	t.Helper()
	data, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	fw := labFor(t, data, nil)
	fw.launch(t, t.TempDir())
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	return fw
}

// removeLeftovers runs `passerellectl lab down` once per test binary:
// it removes what killed runs of these tests left (their owner is gone);
// labs of live runs are kept.
var removeLeftovers sync.Once

// labFor builds the lab of a config text and returns the firmware that
// will run in it, not yet started: the config is written to a temporary
// file with its persistent paths moved off the host (isolateState), and
// tweak, if set, adjusts the lab before it is built. The lab comes down
// when the test ends (and its state file lets `passerellectl lab down`
// remove it if the test binary is killed).
func labFor(t *testing.T, data []byte, tweak func(*lab.Spec)) *firmware {
	t.Helper()
	needRoot(t)
	b := bins(t)
	removeLeftovers.Do(func() {
		if out, err := exec.Command(b.ctl, "lab", "down").CombinedOutput(); err != nil {
			t.Logf("passerellectl lab down: %v: %s", err, out)
		}
	})
	data = isolateState(t, data)
	path := filepath.Join(t.TempDir(), "box.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := lab.SpecFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&spec)
	}
	l, err := lab.Up(context.Background(), spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return &firmware{lab: l, cfg: cfg, path: path}
}

// launch starts `passerelle run` on fw.path in the lab's box namespace,
// with its persistent state under stateDir (never the host's /perm), the
// clock left alone (the lab shares the host's) and a JSON log, and kills
// it when the test ends. It may be called again after the daemon
// stopped, to restart it: the new process appends to the same log.
func (fw *firmware) launch(t *testing.T, stateDir string, extra ...string) {
	t.Helper()
	log := &eventLog{}
	if fw.proc != nil {
		log = fw.proc.log
	}
	ns := fw.lab.Namespace(lab.RoleBox)
	args := append([]string{"run", "--config", fw.path, "--log-format", "json", "--log-level", "debug",
		"--dhcp-lease-dir", filepath.Join(stateDir, "dhcp"), "--set-clock", "never"}, extra...)
	cmd := exec.Command(bins(t).passerelle, args...)
	fw.proc = startProc(t, cmd, log, func(c *exec.Cmd) error { return lab.StartCommand(ns, c) })
	fw.stateDir, fw.extra = stateDir, extra
}

// restart stops the daemon with sig and starts it again in the same lab,
// on the same persistent state, with the same arguments.
func (fw *firmware) restart(t *testing.T, sig os.Signal) {
	t.Helper()
	fw.cmd.Process.Signal(sig)
	if _, ok := fw.wait(10 * time.Second); !ok {
		t.Fatalf("firmware did not stop on %v", sig)
	}
	fw.launch(t, fw.stateDir, fw.extra...)
}

// waitDHCPServing waits until the DHCP server of every zone that has one
// listens: the services start after the config is applied.
func (fw *firmware) waitDHCPServing(t *testing.T) {
	t.Helper()
	for _, z := range fw.cfg.Zones {
		if z.DHCP.Enabled {
			fw.waitEvent(t, 10*time.Second, "dhcp-serving", map[string]string{"zone": z.Name})
		}
	}
}

// isolateState points the config's persistent paths that tests would
// otherwise write on the host (/perm) at a temporary directory: the DNS
// privacy log, and the tunnel's auth key file (tailscaled's state is
// beside it).
func isolateState(t *testing.T, data []byte) []byte {
	t.Helper()
	s := string(data)
	if strings.Contains(s, "  privacy:\n") && !strings.Contains(s, "    directory:") {
		s = strings.Replace(s, "  privacy:\n", "  privacy:\n    directory: "+filepath.Join(t.TempDir(), "dns")+"\n", 1)
	}
	if strings.Contains(s, "\ntunnel:\n") && !strings.Contains(s, "auth_key_file:") {
		s = strings.Replace(s, "\ntunnel:\n", "\ntunnel:\n  auth_key_file: "+filepath.Join(t.TempDir(), "perm", "tunnel", "authkey")+"\n", 1)
	}
	return []byte(s)
}

// get fetches the internet test server's page from a zone's client.
func (fw *firmware) get(zone string) (string, error) {
	c := lab.HTTPClient(fw.lab.Namespace(lab.RoleClient(zone)))
	c.Timeout = 2 * time.Second
	resp, err := c.Get("http://" + fw.lab.InternetServer().String() + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), &statusError{resp.StatusCode}
	}
	return string(b), err
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// boxRoutes shows the default routes of new flows: table 200
// (netmark.TableActive), where the uplink manager puts the chosen uplink.
func (fw *firmware) boxRoutes(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", fw.lab.Namespace(lab.RoleBox), "-4", "route", "show", "table", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	return string(out)
}

func TestPedagogicalClientReachesInternetThroughBox(t *testing.T) {
	fw := startFirmware(t, demoConfig)
	body, err := fw.get("peda")
	if err != nil {
		t.Fatalf("pedagogical client -> internet server: %v", err)
	}
	if body != lab.InternetHTTPBody {
		t.Errorf("body = %q, want %q", body, lab.InternetHTTPBody)
	}
	// The box masqueraded the client: the masquerade rule on the active
	// uplink counted the flow in its named counter (pkg/firewall).
	out, err := exec.Command("ip", "netns", "exec", fw.lab.Namespace(lab.RoleBox), "nft", "list", "counter", "inet", "passerelle", "masq-renater").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "packets ") || strings.Contains(string(out), "packets 0 ") {
		t.Errorf("masquerade on wan0 did not count the client's flow:\n%s", out)
	}
}

func TestSIGHUPReappliesEditedConfig(t *testing.T) {
	fw := startFirmware(t, demoConfig)
	if r := fw.boxRoutes(t); !strings.Contains(r, "default via 192.0.2.1 dev wan0") {
		t.Fatalf("initial default routes:\n%s", r)
	}
	// Make the backup the preferred uplink.
	data, _ := os.ReadFile(fw.path)
	edited := strings.Replace(string(data), "    priority: 2\n", "    priority: 1\n", 1)
	edited = strings.Replace(edited, "  - name: renater\n    interface: wan0\n", "  - name: renater\n    interface: wan0\n    priority: 3\n", 1)
	if edited == string(data) {
		t.Fatal("test edit did not change the config")
	}
	if err := os.WriteFile(fw.path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := fw.mark()
	fw.cmd.Process.Signal(syscall.SIGHUP)
	fw.waitEventAfter(t, mark, 5*time.Second, "config-reload", nil)
	fw.waitEventAfter(t, mark, 5*time.Second, "config-applied", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := fw.boxRoutes(t)
		if strings.Contains(r, "default via 192.0.2.5 dev wan1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes after SIGHUP do not follow the edited priorities:\n%s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := fw.get("peda"); err != nil {
		t.Errorf("client lost the internet after the reload (now via the backup): %v", err)
	}
}

func TestSIGHUPWithBrokenConfigKeepsRunningOne(t *testing.T) {
	fw := startFirmware(t, demoConfig)
	before := fw.boxRoutes(t)
	data, _ := os.ReadFile(fw.path)
	broken := strings.Replace(string(data), "subnet: 10.20.0.0/24", "subnet: 10.10.0.0/24", 1)
	if err := os.WriteFile(fw.path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := fw.mark()
	fw.cmd.Process.Signal(syscall.SIGHUP)
	r := fw.waitRecord(t, mark, 5*time.Second, "config-rejected", nil)
	// The reason is in the event's err, or, for a config with several
	// problems, in the "problem" attribute of the records before it.
	const why = "zones[1].subnet: 10.10.0.0/24 overlaps 10.10.0.0/24 (zones[0].subnet)"
	said := strings.Contains(r.str("err"), why)
	for _, p := range fw.log.records(mark) {
		said = said || strings.Contains(p.str("problem"), why)
	}
	if !said {
		t.Errorf("the log does not say why the config was refused (config-rejected err=%q)", r.str("err"))
	}
	if err, ok := fw.exited(); ok {
		t.Fatalf("firmware exited after a broken config: %v", err)
	}
	if after := fw.boxRoutes(t); after != before {
		t.Errorf("routes changed after a refused config:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := fw.get("peda"); err != nil {
		t.Errorf("client lost the internet after a refused config: %v", err)
	}
	if _, err := fw.get("admin"); err != nil {
		t.Errorf("admin client lost the internet after a refused config: %v", err)
	}
}
