package integration

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"passerelle/pkg/lab"
	"passerelle/pkg/manage"
)

// TestManageInitRebootInWindow: the firmware as PID 1 (PID, mount, UTS
// and IPC namespaces of its own, in the lab's box network namespace) with
// /perm on an ext4 image that outlives each boot. A bundle pulled from
// the datacenter asks for a 10-minute confirm window, so its gate cannot
// commit it before 30 s; the box goes down inside the window, first by
// its orderly reboot path (SIGTERM: services stopped, /perm unmounted,
// reboot(2)), then by a power cut (SIGKILL of PID 1, nothing written on
// the way down). Each time the next boot on the same /perm rolls the
// bundle back before anything is applied, comes up on the previous
// generation, and says why in its log, the status screen and the
// metrics.
func TestManageInitRebootInWindow(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux, e2fsprogs)", tool)
		}
	}
	// Not under /tmp: the init mounts a fresh tmpfs there.
	work, err := os.MkdirTemp("/var/tmp", "passerelle-manage-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	key := filepath.Join(work, "noc.key")
	k := nocKeygen(t, bins(t).ctl, "noc-lab", key)
	caFile, cert := labCert(t, work, "203.0.113.100")
	cfgText := readDemo(t) + fmt.Sprintf(`management:
  trusted_keys:
    - name: noc-lab
      public_key: %s
  pull_url: https://203.0.113.100:8443/bundles/{uai}.bundle
  ca_file: %s
`, k.PublicKey, caFile)
	fw := labFor(t, []byte(cfgText), nil)
	fw.path = filepath.Join(work, "box.yaml")
	if err := os.WriteFile(fw.path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	ml := &manageLab{firmware: fw, dir: work, key: key, pub: filepath.Join(work, "pub")}
	servePull(t, ml, cert)

	img := filepath.Join(work, "perm.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	permDir := filepath.Join(work, "perm")
	sock := filepath.Join(work, "control.sock")
	log := &eventLog{}
	var pid1 int // the init's PID as the host sees it
	boot := func() {
		t.Helper()
		cmd := exec.Command("unshare", "--pid", "--mount", "--uts", "--ipc", "--fork", "--kill-child", "--propagation", "private", "--",
			bins(t).passerelle, "run", "--config", fw.path, "--log-format", "json", "--log-level", "debug", "--set-clock", "never",
			"--perm-device", img, "--perm-dir", permDir, "--dhcp-lease-dir", filepath.Join(permDir, "dhcp"),
			"--control-socket", sock, "--pull-every", "1s", "--shutdown-deadline", "10s", "--stop-timeout", "2s")
		ns := fw.lab.Namespace(lab.RoleBox)
		fw.proc = startProc(t, cmd, log, func(c *exec.Cmd) error { return lab.StartCommand(ns, c) })
		fw.waitEvent(t, 30*time.Second, "daemon-running", nil)
		pid1 = childOf(t, fw.cmd.Process.Pid)
	}
	// down waits until the init has gone and its /perm image is free
	// again (the loop device detaches with the last mount).
	down := func(timeout time.Duration) error {
		t.Helper()
		err, ok := fw.wait(timeout)
		if !ok {
			t.Fatalf("init still running %s after being stopped", timeout)
		}
		waitUntil(t, "the /perm loop device detached", 10*time.Second, func() bool {
			files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
			for _, f := range files {
				if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) == img {
					return false
				}
			}
			return true
		})
		return err
	}
	admin := netip.Addr{}
	for _, z := range fw.cfg.Zones {
		if z.Name == "admin" {
			admin = z.Address
		}
	}
	metricsURL := "http://" + netip.AddrPortFrom(admin, 9100).String() + "/metrics"

	boot()
	fw.waitEvent(t, 30*time.Second, "config-applied", map[string]string{"source": "start"})

	for _, c := range []struct {
		name    string
		version int
		stop    func()
		reason  string
		detail  string
	}{
		{"orderly reboot", 1, func() {
			if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			// In a PID namespace, reboot(2) ends the init with SIGHUP.
			if err := down(40 * time.Second); err == nil || !strings.Contains(err.Error(), "hangup") {
				t.Errorf("init ended with %v, want the SIGHUP of reboot(2)", err)
			}
			if len(fw.events("shutdown", map[string]string{"action": "reboot"})) == 0 {
				t.Error("no shutdown event (action reboot)")
			}
		}, manage.RollbackRestart, "stopped in order (reboot)"},
		{"power cut", 2, func() {
			if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			down(20 * time.Second)
		}, manage.RollbackCrash, "without an orderly shutdown"},
	} {
		// Subtests share the box: each needs the one before.
		t.Logf("--- %s", c.name)
		mark := fw.mark()
		ml.publish(t, c.version, func(s string) string {
			s = strings.Replace(s, "deny: [bad.lab.test]", fmt.Sprintf("deny: [bad.lab.test, v%d.lab.test]", c.version), 1)
			// A long window: the gate cannot commit it before 30 s.
			return strings.Replace(s, "management:\n", "management:\n  confirm_timeout: 10m\n", 1)
		})
		pend := fw.waitRecord(t, mark, 30*time.Second, manage.EvBundlePending, map[string]string{"source": "pull"})
		gen := pend.str("gen")
		c.stop()
		if len(fw.log.find(mark, manage.EvBundleCommitted, nil)) > 0 {
			t.Fatal("the bundle was committed before the box went down")
		}

		mark = fw.mark()
		boot()
		r := fw.waitRecord(t, mark, 30*time.Second, manage.EvBundleRolledBack, map[string]string{"gen": gen})
		if r.str("reason") != c.reason || !strings.Contains(r.str("detail"), c.detail) {
			t.Errorf("%s: rolled back for %s (%s), want %s (%s)", c.name, r.str("reason"), r.str("detail"), c.reason, c.detail)
		}
		prev := r.str("booting")
		fw.waitEventAfter(t, mark, 30*time.Second, "config-applied", map[string]string{"source": "start"})
		// Generation N, not the bundle's: the base (1), made of the
		// file when the first bundle came; the first bundle was rolled
		// back, so it is still N for the second.
		if prev != "1" {
			t.Errorf("%s: booting generation %s, want 1", c.name, prev)
		}
		for _, rec := range fw.log.records(mark) {
			if strings.Contains(rec.str("msg"), "last committed generation") && rec.str("gen") != "1" {
				t.Errorf("%s: booted generation %s, want 1", c.name, rec.str("gen"))
			}
		}
		// The same bundle, polled again, is refused as a replay.
		fw.waitEventAfter(t, mark, 30*time.Second, manage.EvBundleRejected, map[string]string{"reason": string(manage.ReasonReplay)})

		// /perm as the next boot left it.
		s, err := manage.OpenStore(filepath.Join(fmt.Sprintf("/proc/%d/root", pid1), permDir, "manage"))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := s.State()
		g, _ := s.Get(c.version + 1)
		if st.Pending != nil || st.Current != 1 || g.State != manage.StateRolledBack || !strings.HasPrefix(g.Why, c.reason+": ") {
			t.Errorf("%s: state %+v, generation %d %s (%s)", c.name, st, g.N, g.State, g.Why)
		}

		// The status screen and the metrics say so.
		out, err := exec.Command(bins(t).passerelle, "status", "--json", "--socket", sock).Output()
		if !strings.Contains(string(out), "config-rolled-back") || !strings.Contains(string(out), "("+c.reason+")") {
			t.Errorf("%s: passerelle status (%v) does not show the rollback:\n%s", c.name, err, out)
		}
		var body string
		waitUntil(t, "/metrics from the admin zone", 20*time.Second, func() bool {
			body, err = getFrom(fw.lab.Namespace(lab.RoleClient("admin")), metricsURL)
			return err == nil
		})
		want := fmt.Sprintf(`passerelle_manage_bundles_total{outcome="rolled-back",reason="%s"} 1`, c.reason)
		if !strings.Contains(body, want) || !strings.Contains(body, "passerelle_manage_generation 1") ||
			!strings.Contains(body, "passerelle_manage_pending 0") {
			t.Errorf("%s: /metrics lacks %s, generation 1, pending 0:\n%s", c.name, want, grepLines(body, "passerelle_manage_"))
		}
	}
}

// servePull serves ml.pub as https://203.0.113.100:8443/bundles/ from
// the datacenter's namespace.
func servePull(t *testing.T, ml *manageLab, cert tls.Certificate) {
	t.Helper()
	ln, err := lab.Listen(ml.lab.Namespace(lab.RoleAcademy), "tcp4", "203.0.113.100:8443")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.StripPrefix("/bundles", manage.FileServer(ml.pub)),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
}
