package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"passerelle/pkg/boot"
)

// TestInitAsPID1 runs the real firmware as PID 1 of new PID, mount, UTS,
// IPC and network namespaces (unshare(1); the mount namespace is private,
// so nothing mounted there reaches the host) with configs/demo.yaml, an
// ext4 image as /perm and a few test services, and checks that it boots,
// reaps an orphan, restarts a crashing service with growing delays, marks
// it failed, and on SIGTERM stops its services in reverse order within
// the deadline and reboots (in a PID namespace, reboot(2) ends its init).
func TestInitAsPID1(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "nsenter", "mkfs.ext4", "e2fsck", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux, e2fsprogs)", tool)
		}
	}
	bin := bins(t).passerelle
	// Not under /tmp: the init mounts a fresh tmpfs there, which would
	// hide the test's files from it.
	work, err := os.MkdirTemp("/var/tmp", "passerelle-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })

	seed := filepath.Join(work, "seed")
	os.Mkdir(seed, 0o755)
	os.WriteFile(filepath.Join(seed, "kept.txt"), []byte("from before the boot\n"), 0o644)
	img := filepath.Join(work, "perm.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", seed, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	permDir := filepath.Join(work, "perm")
	cfgPath := filepath.Join(work, "box.yaml")
	os.WriteFile(cfgPath, []byte(readDemo(t)), 0o644)

	// DIR stands for the work directory.
	services := strings.ReplaceAll(`
- name: first
  command: [/bin/sh, -c, "trap 'echo got TERM; exit 0' TERM; touch DIR/first.ready; while :; do sleep 0.05; done"]
  ready_file: DIR/first.ready
- name: orphaner
  # The grandchild leaves the service's process group and outlives it:
  # it is re-parented to PID 1, and exits later as a zombie. The service
  # waits until it is in its own session, since the supervisor kills what
  # is left in a service's group when the service exits.
  command: [/bin/sh, -c, "setsid /bin/sh -c 'echo $$ > DIR/orphan.pid; sleep 1; exit 7' & while [ ! -s DIR/orphan.pid ]; do sleep 0.01; done; exit 125"]
- name: crasher
  command: [/bin/sh, -c, "echo crashing; exit 1"]
- name: second
  command: [/bin/sh, -c, "trap 'echo got TERM; exit 0' TERM; touch DIR/second.ready; while :; do sleep 0.05; done"]
  ready_file: DIR/second.ready
- name: stubborn
  command: [/bin/sh, -c, "trap '' TERM; touch DIR/stubborn.ready; while :; do sleep 0.05; done"]
  ready_file: DIR/stubborn.ready
`, "DIR", work)
	svcPath := filepath.Join(work, "services.yaml")
	os.WriteFile(svcPath, []byte(services), 0o644)

	const deadline = 5 * time.Second
	in := startInit(t, bin, cfgPath, "--perm-device", img, "--perm-dir", permDir, "--services", svcPath,
		"--dhcp-lease-dir", filepath.Join(permDir, "leases"),
		"--backoff-base", "100ms", "--backoff-max", "400ms", "--crash-loop-exits", "5", "--crash-loop-window", "1m",
		"--failed-retry", "1h", "--stop-timeout", "500ms", "--shutdown-deadline", deadline.String(), "--reap-grace", "300ms")
	init := in.pid

	t.Run("mounts", func(t *testing.T) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", init))
		if err != nil {
			t.Fatal(err)
		}
		mounts, err := boot.ParseMountinfo(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range boot.Mounts() {
			top, ok := boot.Top(mounts, m.Target)
			if !ok || top.FSType != m.FSType {
				t.Errorf("%s: top mount %+v, want %s", m.Target, top, m.FSType)
				continue
			}
			for _, o := range []struct {
				set  bool
				name string
			}{{m.NoSuid, "nosuid"}, {m.NoDev, "nodev"}, {m.NoExec, "noexec"}} {
				if o.set && !slices.Contains(strings.Split(top.Options, ","), o.name) {
					t.Errorf("%s mounted %s, want %s", m.Target, top.Options, o.name)
				}
			}
		}
		// A fresh /proc: the init's own PID namespace.
		if top, _ := boot.Top(mounts, "/proc"); top.Source != "proc" {
			t.Errorf("/proc: %+v", top)
		}
		if top, ok := boot.Top(mounts, permDir); !ok || top.FSType != "ext4" || !strings.HasPrefix(top.Source, "/dev/loop") {
			t.Errorf("%s: %+v, want ext4 on a loop device", permDir, top)
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s/kept.txt", init, permDir))
		if string(data) != "from before the boot\n" {
			t.Errorf("/perm/kept.txt = %q, %v", data, err)
		}
		// Nothing leaked into the test's own mount namespace.
		host, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(host), permDir) {
			t.Errorf("%s is mounted in the host namespace too", permDir)
		}
	})

	t.Run("system", func(t *testing.T) {
		pid := strconv.Itoa(init)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--uts", "hostname"}, "passerelle-0599999y"},
			{[]string{"--net", "cat", "/proc/sys/net/ipv4/ip_forward"}, "1"},
			{[]string{"--net", "cat", "/proc/sys/net/ipv4/conf/all/rp_filter"}, "2"},
			{[]string{"--net", "cat", "/sys/class/net/lo/operstate"}, "unknown"}, // lo is "unknown" when up
		} {
			out, err := exec.Command("nsenter", append([]string{"--target", pid}, c.args...)...).CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
				t.Errorf("%v: %q, %v; want %q", c.args, got, err, c.want)
			}
		}
		out, _ := exec.Command("nsenter", "--target", pid, "--net", "ip", "-o", "link", "show", "lo").CombinedOutput()
		if !strings.Contains(string(out), "UP") {
			t.Errorf("lo is not up: %s", out)
		}
	})

	t.Run("reaps orphaned grandchild", func(t *testing.T) {
		var orphan string
		waitUntil(t, "orphan pid file", 5*time.Second, func() bool {
			data, _ := os.ReadFile(filepath.Join(work, "orphan.pid"))
			orphan = strings.TrimSpace(string(data))
			return orphan != ""
		})
		in.waitEvent(t, 10*time.Second, "orphan-reaped", map[string]string{"pid": orphan, "status": "exit code 7"})
		// A supervised child is a zombie for the instant between its exit
		// and the supervisor's wait (the crasher below restarts all the
		// while): only a zombie seen in two scans a second apart is one
		// nobody reaps.
		first := zombiesInPIDNamespaceOf(t, init)
		time.Sleep(time.Second)
		var kept []int
		for _, z := range zombiesInPIDNamespaceOf(t, init) {
			if slices.Contains(first, z) {
				kept = append(kept, z)
			}
		}
		if len(kept) > 0 {
			t.Errorf("zombies left unreaped in the init's namespace for a second: %v", kept)
		}
	})

	t.Run("crashing service backs off then fails", func(t *testing.T) {
		in.waitEvent(t, 15*time.Second, "service-failed", map[string]string{"service": "crasher"})
		var delays []string
		for _, r := range in.events("service-restart", map[string]string{"service": "crasher"}) {
			ns, _ := strconv.ParseInt(r.str("after"), 10, 64)
			delays = append(delays, time.Duration(ns).String())
		}
		if want := "100ms 200ms 400ms 400ms"; strings.Join(delays, " ") != want {
			t.Errorf("restart delays %v, want %s", delays, want)
		}
		in.waitEvent(t, 5*time.Second, "health-raised", map[string]string{"code": "service-failed:crasher"})
	})

	t.Run("shutdown in reverse order within the deadline", func(t *testing.T) {
		start := time.Now()
		if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err, ok := in.wait(deadline + 5*time.Second)
		if !ok {
			t.Fatalf("init still running %s after SIGTERM", deadline+5*time.Second)
		}
		took := time.Since(start)
		t.Logf("shutdown took %s (unshare: %v)", took.Round(time.Millisecond), err)
		// In a PID namespace, reboot(2) ends the init with SIGHUP.
		if err == nil || !strings.Contains(err.Error(), "hangup") {
			t.Errorf("init ended with %v, want the SIGHUP of reboot(2)", err)
		}
		var order []string
		killed := map[string]bool{}
		for _, r := range in.events("service-stopped", nil) {
			name := r.str("service")
			order = append(order, name)
			killed[name] = r.str("killed") == "true"
		}
		var ours []string
		for _, n := range order {
			if slices.Contains([]string{"first", "second", "stubborn"}, n) {
				ours = append(ours, n)
			}
		}
		if got := strings.Join(ours, " "); got != "stubborn second first" {
			t.Errorf("test services stopped in order %q (all: %v), want stubborn second first", got, order)
		}
		if !killed["stubborn"] || killed["first"] || killed["second"] {
			t.Errorf("killed = %v, want only stubborn killed", killed)
		}
		// Box services were started last, so they stop first.
		if i := slices.Index(order, "first"); i < 0 || slices.Index(order, "interfaces") > i {
			t.Errorf("stop order %v: box services should stop before the test services started earlier", order)
		}
		if len(in.events("shutdown", map[string]string{"action": "reboot"})) == 0 {
			t.Error("no shutdown event (action reboot) before the reboot")
		}
		// /perm was unmounted, so its loop device was detached
		// (autoclear).
		waitUntil(t, "loop device detached", 5*time.Second, func() bool {
			files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
			for _, f := range files {
				if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) == img {
					return false
				}
			}
			return true
		})
	})
}

// initRun is the firmware running as PID 1 under unshare(1).
type initRun struct {
	*proc
	pid int // the init's PID as the host sees it
}

// startInit starts the firmware as PID 1 of new namespaces (unshare(1):
// PID, mount, UTS, IPC and network; the namespaces end with the init,
// which --kill-child takes down with unshare when the test ends) and
// waits until it runs.
func startInit(t *testing.T, bin, cfgPath string, args ...string) *initRun {
	t.Helper()
	args = append([]string{"--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "--kill-child", "--propagation", "private", "--",
		bin, "run", "--config", cfgPath, "--log-format", "json", "--log-level", "debug", "--set-clock", "never"}, args...)
	in := &initRun{proc: startProc(t, exec.Command("unshare", args...), &eventLog{}, (*exec.Cmd).Start)}
	// Not config-applied: the init runs on whether or not the other
	// components accept a box without interfaces.
	in.waitEvent(t, 20*time.Second, "daemon-running", nil)
	in.pid = childOf(t, in.cmd.Process.Pid)
	return in
}

// TestInitPowersOffOnSIGUSR2WithoutPerm boots the init with no persistent
// partition at all: it runs on a tmpfs and says so, then SIGUSR2 powers
// it off (in a PID namespace, power off ends the init with SIGINT).
func TestInitPowersOffOnSIGUSR2WithoutPerm(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	bin := bins(t).passerelle
	work, cfgPath := initWorkDir(t)
	// No image and no partition named perm on this machine.
	in := startInit(t, bin, cfgPath, "--perm-device", filepath.Join(work, "no-such-disk"), "--perm-dir", filepath.Join(work, "perm"),
		"--dhcp-lease-dir", filepath.Join(work, "perm", "leases"))
	in.waitEvent(t, 5*time.Second, "health-raised", map[string]string{"code": "perm-unavailable", "severity": "critical"})
	f, _ := os.Open(fmt.Sprintf("/proc/%d/mountinfo", in.pid))
	mounts, _ := boot.ParseMountinfo(f)
	f.Close()
	if top, ok := boot.Top(mounts, filepath.Join(work, "perm")); !ok || top.FSType != "tmpfs" {
		t.Errorf("perm: %+v, want a tmpfs in its place", top)
	}
	syscall.Kill(in.pid, syscall.SIGUSR2)
	err, ok := in.wait(40 * time.Second)
	if !ok {
		t.Fatal("init still running after SIGUSR2")
	}
	if err == nil || !strings.Contains(err.Error(), "interrupt") {
		t.Errorf("init ended with %v, want the SIGINT of a power off", err)
	}
	if len(in.events("shutdown", map[string]string{"action": "power off"})) == 0 {
		t.Error("no shutdown event (action power off) before the power off")
	}
}

// initWorkDir makes a work directory with a copy of configs/demo.yaml.
// Not under /tmp: the init mounts a fresh tmpfs there, which would hide
// the test's files from it.
func initWorkDir(t *testing.T) (dir, cfgPath string) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "passerelle-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfgPath = filepath.Join(dir, "box.yaml")
	if err := os.WriteFile(cfgPath, []byte(readDemo(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath
}

// childOf finds the process unshare forked.
func childOf(t *testing.T, parent int) int {
	t.Helper()
	var child int
	waitUntil(t, "unshare's child", 5*time.Second, func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if ppid, _, ok := procStatus(pid); ok && ppid == parent {
				child = pid
				return true
			}
		}
		return false
	})
	return child
}

// procStatus returns a process's parent and state letter.
func procStatus(pid int) (ppid int, state string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, "", false
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "PPid":
			ppid, _ = strconv.Atoi(v)
		case "State":
			state = v[:1]
		}
	}
	return ppid, state, true
}

// zombiesInPIDNamespaceOf lists zombie processes in pid's PID namespace,
// as the host's /proc sees them.
func zombiesInPIDNamespaceOf(t *testing.T, pid int) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); l != ns {
			continue
		}
		if _, st, ok := procStatus(p); ok && st == "Z" {
			out = append(out, p)
		}
	}
	return out
}
