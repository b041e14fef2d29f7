package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

// These tests run the real firmware binary in the box namespace of a lab
// built from the config, and check what a client sees.

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab integration tests need root (network namespaces, nftables); run `sudo make test`")
	}
	if testing.Short() {
		t.Skip("lab integration test skipped in -short mode")
	}
}

// buildFirmware builds the passerelle binary once per test binary run.
var buildFirmware = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "passerelle-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "passerelle")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// firmware is one `passerelle run` in a lab.
type firmware struct {
	lab    *lab.Lab
	cfg    *config.Config
	path   string // config file the daemon reads
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan error
	// stateDir is the daemon's /perm, kept across restarts.
	stateDir string
}

func startFirmware(t *testing.T, configFile string) *firmware {
	t.Helper()
	data, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	fw := labFor(t, data, nil)
	fw.launch(t, t.TempDir())
	fw.waitLog(t, "configuration applied", 10*time.Second)
	return fw
}

// labFor builds the lab of a config text and returns the firmware that
// will run in it, not yet started: the config is written to a temporary
// file with its persistent paths moved off the host (isolateState), and
// tweak, if set, adjusts the lab before it is built. The lab comes down
// when the test ends.
func labFor(t *testing.T, data []byte, tweak func(*lab.Spec)) *firmware {
	t.Helper()
	needRoot(t)
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
	return &firmware{lab: l, cfg: cfg, path: path, logs: &lockedBuffer{}}
}

// launch starts `passerelle run` on fw.path in the lab's box namespace, with its
// persistent state under stateDir (never the host's /perm) and the clock
// left alone (the lab shares the host's), and kills it when the test ends.
// It may be called again after the daemon stopped, to restart it.
func (fw *firmware) launch(t *testing.T, stateDir string, extra ...string) {
	t.Helper()
	bin, err := buildFirmware()
	if err != nil {
		t.Fatalf("build firmware: %v", err)
	}
	ns := fw.lab.Namespace(lab.RoleBox)
	args := append([]string{"run", "--config", fw.path, "--log-level", "debug",
		"--dhcp-lease-dir", filepath.Join(stateDir, "dhcp"), "--set-clock", "never"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = fw.logs, fw.logs
	if err := lab.StartCommand(ns, cmd); err != nil {
		t.Fatalf("start firmware: %v", err)
	}
	exited := make(chan error, 1)
	fw.cmd, fw.exited, fw.stateDir = cmd, exited, stateDir
	// Closed after the exit status, so a second reader never blocks.
	go func() { exited <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("firmware pid %d did not exit after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("firmware log:\n%s", fw.logs.String())
		}
	})
}

// restart stops the daemon with sig and starts it again in the same lab,
// on the same persistent state.
func (fw *firmware) restart(t *testing.T, sig os.Signal) {
	t.Helper()
	fw.cmd.Process.Signal(sig)
	select {
	case <-fw.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("firmware did not stop on %v", sig)
	}
	fw.launch(t, fw.stateDir)
}

// isolateState points the config's persistent paths that tests would
// otherwise write on the host (/perm) at a temporary directory.
func isolateState(t *testing.T, data []byte) []byte {
	t.Helper()
	s := string(data)
	if strings.Contains(s, "  privacy:\n") && !strings.Contains(s, "    directory:") {
		s = strings.Replace(s, "  privacy:\n", "  privacy:\n    directory: "+filepath.Join(t.TempDir(), "dns")+"\n", 1)
	}
	return []byte(s)
}

// waitLog waits until the daemon has logged s (counting from the start).
func (fw *firmware) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(fw.logs.String(), s) {
		select {
		case err := <-fw.exited:
			t.Fatalf("firmware exited (%v) before logging %q", err, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("firmware did not log %q within %s", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	fw := startFirmware(t, "../../configs/demo.yaml")
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
	fw := startFirmware(t, "../../configs/demo.yaml")
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
	fw.cmd.Process.Signal(syscall.SIGHUP)
	fw.waitLog(t, "SIGHUP", 5*time.Second)
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
	fw := startFirmware(t, "../../configs/demo.yaml")
	before := fw.boxRoutes(t)
	data, _ := os.ReadFile(fw.path)
	broken := strings.Replace(string(data), "subnet: 10.20.0.0/24", "subnet: 10.10.0.0/24", 1)
	if err := os.WriteFile(fw.path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	fw.cmd.Process.Signal(syscall.SIGHUP)
	fw.waitLog(t, "new configuration not applied; the running one is kept", 5*time.Second)
	logs := fw.logs.String()
	if !strings.Contains(logs, "zones[1].subnet: 10.10.0.0/24 overlaps 10.10.0.0/24 (zones[0].subnet)") {
		t.Errorf("the log does not say why the config was refused:\n%s", logs)
	}
	select {
	case err := <-fw.exited:
		t.Fatalf("firmware exited after a broken config: %v", err)
	default:
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
