package main

import (
	"bufio"
	"bytes"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLabDownAfterKilledRun is the lab's promise to CI: a `lab up` killed
// midway (firmware-like child running, servers up) leaves nothing behind
// once `passerellectl lab down` has run: no namespace, no mount, no
// process, no link.
func TestLabDownAfterKilledRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces); run `sudo make test`")
	}
	if testing.Short() {
		t.Skip("lab test skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "passerellectl")
	if out, err := exec.Command(goTool(), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// Become the reaper of the orphans the kill makes, so the test can tell
	// "killed and reaped" from "still running".
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

	up := exec.Command(bin, "lab", "up", "--config", "../../configs/demo.yaml", "--run", "sleep 300")
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	up.Stderr = os.Stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	var id string
	idRE := regexp.MustCompile(`^Lab ([0-9a-f]{6}) is up`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := idRE.FindStringSubmatch(sc.Text()); m != nil {
			id = m[1]
			break
		}
	}
	if id == "" {
		up.Process.Kill()
		up.Wait()
		t.Fatal("lab up never said it was up")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	prefix := "pl" + id
	t.Cleanup(func() { exec.Command(bin, "lab", "down").Run() }) // if an assertion fails midway

	// Wait for the child in the box namespace, then kill lab up outright.
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) == 0 && time.Now().Before(deadline) {
		out, _ := exec.Command("ip", "netns", "pids", prefix+"-box").Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) == 0 {
		t.Fatal("no process ever ran in the box namespace")
	}
	if err := up.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	up.Wait()
	if n := leftovers(t, prefix); n == "" {
		t.Fatal("killing lab up left nothing to clean: the test proves nothing")
	}

	var out, errb bytes.Buffer
	if code := run([]string{"lab", "down"}, &out, &errb); code != 0 {
		t.Fatalf("lab down: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "removed") {
		t.Errorf("lab down did not say what it removed: %q", out.String())
	}
	for _, p := range pids {
		var ws unix.WaitStatus
		unix.Wait4(p, &ws, 0, nil) // reap it if it was ours to reap
		if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err == nil {
			t.Errorf("process %d from the box namespace is still alive", p)
		}
	}
	if n := leftovers(t, prefix); n != "" {
		t.Errorf("after lab down, still present:\n%s", n)
	}
}

// leftovers lists what of a lab run is still on the machine.
func leftovers(t *testing.T, prefix string) string {
	t.Helper()
	var b strings.Builder
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			b.WriteString("namespace " + e.Name() + "\n")
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, prefix) {
			b.WriteString("mount " + line + "\n")
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		if strings.Contains(line, prefix) {
			b.WriteString("link " + line + "\n")
		}
	}
	if _, err := os.Stat("/run/passerelle-lab/" + strings.TrimPrefix(prefix, "pl") + ".json"); err == nil {
		b.WriteString("state file\n")
	}
	return b.String()
}

// goTool is the go command to build and list with: the one on PATH, else
// the toolchain's own.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(build.Default.GOROOT, "bin", "go")
}
