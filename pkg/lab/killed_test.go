package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"passerelle/pkg/lab"
)

// helperEnv switches the test binary into TestHelperLabProcess mode.
const helperEnv = "PASSERELLE_LAB_TEST_HELPER"

// TestHelperLabProcess is not a test: it is the body of the lab process
// that TestKilled* run in a child and kill. It brings a lab up, starts a
// long-lived process in the box namespace, reports both on stdout and waits
// to be killed.
func TestHelperLabProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestKilled*, not a test on its own")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fmt.Println("STARTING")
	l, err := lab.Up(context.Background(), schoolSpec(), logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: Up:", err)
		os.Exit(2)
	}
	sleep := exec.Command("sleep", "300")
	if err := lab.StartCommand(l.Namespace("box"), sleep); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		l.Down()
		os.Exit(2)
	}
	fmt.Printf("LAB %s %d\n", l.ID, sleep.Process.Pid)

	// Wait to be killed. Should the parent test die first, stdin reaches
	// EOF: tidy up rather than leak a lab.
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = sleep.Process.Kill()
	_ = l.Down()
	os.Exit(0)
}

// helper is a running TestHelperLabProcess child.
type helper struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	once   sync.Once
}

func startHelper(t *testing.T) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLabProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.StdinPipe(); err != nil { // kept open: EOF means "parent gone"
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, lines: make(chan string, 16), stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			t.Logf("helper stderr:\n%s", h.stderr.String())
		}
	})
	return h
}

// waitLine waits for a stdout line starting with prefix.
func (h *helper) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before printing %q; stderr:\n%s", prefix, h.stderr.String())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("helper did not print %q within 30s; stderr:\n%s", prefix, h.stderr.String())
		}
	}
}

// kill SIGKILLs the helper (no chance to clean up) and reaps it.
func (h *helper) kill() {
	h.once.Do(func() {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// becomeSubreaper makes processes orphaned by the killed helper (its sleep)
// our children, so the test can reap them and check they are really gone
// instead of depending on what PID 1 of the machine does with orphans.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become child subreaper: %v", err)
	}
	t.Cleanup(func() {
		reapZombieChildren()
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
}

// reapZombieChildren reaps our zombie children (and only zombies, so that
// exec.Cmd instances still running keep their Wait working).
func reapZombieChildren() {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(path, "/")[2])
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// TestKilledRunIsCleanedUp is the acceptance test for lab cleanup: a lab
// process is SIGKILLed with its servers running and a child process living
// in the box namespace; Cleanup must leave no namespace, mount, link,
// process or state file behind.
//
// Not parallel: namespace inode numbers are recycled, and the process scan
// must not mistake a concurrent test's namespace for one of the killed run.
func TestKilledRunIsCleanedUp(t *testing.T) {
	requireRoot(t)
	becomeSubreaper(t)
	t.Cleanup(func() { _, _ = lab.Cleanup(testLogger(t)) }) // in case the test fails midway
	vethsBefore := rootVeths(t)

	h := startHelper(t)
	f := strings.Fields(h.waitLine(t, "LAB "))
	if len(f) != 3 {
		t.Fatalf("bad helper line %q", f)
	}
	id := f[1]
	sleepPID, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helper pid %d built lab %s; sleep pid %d in its box", h.cmd.Process.Pid, id, sleepPID)

	names, _ := filepath.Glob(filepath.Join(lab.NetnsDir, "pl"+id+"-*"))
	if len(names) != 7 {
		t.Fatalf("helper lab has namespaces %v, want 7", names)
	}
	idents := map[nsIdent]bool{}
	for _, n := range names {
		id, ok := statNS(t, n)
		if !ok {
			t.Fatalf("stat %s failed", n)
		}
		idents[id] = true
	}

	// Midway for real: the helper's servers answer and its child lives in
	// the box namespace.
	resp, err := lab.HTTPClient("pl" + id + "-inet").Get("http://203.0.113.10/")
	if err != nil {
		t.Fatalf("helper's internet server: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != lab.InternetHTTPBody {
		t.Fatalf("helper's internet server answered %q", body)
	}
	if pids := processesIn(t, idents); !slices.Contains(pids, sleepPID) {
		t.Fatalf("sleep %d not found in the lab namespaces (found %v)", sleepPID, pids)
	}

	h.kill()

	// The leftovers are real: a killed run cleans nothing by itself.
	if left := runArtifacts(t, id); len(left) == 0 {
		t.Fatal("killed run left nothing behind: the test proves nothing")
	}
	if pids := processesIn(t, idents); !slices.Contains(pids, sleepPID) {
		t.Fatalf("orphaned sleep %d not in the lab namespaces any more (found %v)", sleepPID, pids)
	}

	start := time.Now()
	removed, err := lab.Cleanup(testLogger(t))
	if err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	t.Logf("Cleanup took %v, removed %v", time.Since(start).Round(time.Millisecond), removed)
	for _, n := range names {
		if !slices.Contains(removed, filepath.Base(n)) {
			t.Errorf("Cleanup did not report removing %s", filepath.Base(n))
		}
	}
	if !slices.Contains(removed, filepath.Join(lab.DefaultStateDir, id+".json")) {
		t.Errorf("Cleanup did not report removing the state file")
	}

	requireNoArtifacts(t, id)
	if pids := processesIn(t, idents); len(pids) > 0 {
		t.Errorf("processes %v still in the killed run's namespaces", pids)
	}
	if !reapOrGone(sleepPID, 5*time.Second) {
		t.Errorf("sleep %d still exists", sleepPID)
	}
	for name := range rootVeths(t) {
		if !vethsBefore[name] {
			t.Errorf("veth %s appeared in the root namespace", name)
		}
	}
	runs, err := lab.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.ID == id {
			t.Errorf("List still shows the killed run: %+v", r)
		}
	}
	removed, err = lab.Cleanup(testLogger(t))
	if err != nil || slices.ContainsFunc(removed, func(s string) bool { return strings.Contains(s, id) }) {
		t.Errorf("second Cleanup: removed %v, err %v; want nothing of %s", removed, err, id)
	}
}

// TestKilledDuringUpIsCleanedUp kills lab processes at various points of
// Up (before the state file, between namespaces, while creating links, ...)
// and checks that Cleanup always leaves only the runs of live processes.
func TestKilledDuringUpIsCleanedUp(t *testing.T) {
	requireRoot(t)
	becomeSubreaper(t)
	t.Cleanup(func() { _, _ = lab.Cleanup(testLogger(t)) })
	vethsBefore := rootVeths(t)

	for _, delay := range []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			h := startHelper(t)
			h.waitLine(t, "STARTING")
			time.Sleep(delay)
			h.kill()
			pid := h.cmd.Process.Pid

			removed, err := lab.Cleanup(testLogger(t))
			if err != nil {
				t.Errorf("Cleanup: %v", err)
			}
			t.Logf("killed after %v: Cleanup removed %d items", delay, len(removed))
			reapZombieChildren()

			runs, err := lab.List()
			if err != nil {
				t.Fatal(err)
			}
			alive := map[string]bool{}
			for _, r := range runs {
				if r.PID == pid || !r.Alive {
					t.Errorf("run left after Cleanup: %+v", r)
				}
				alive[r.ID] = true
			}
			// Anything lab-shaped left must belong to a live run (another
			// engineer's, say), never to the killed helper.
			leftovers, _ := filepath.Glob(filepath.Join(lab.NetnsDir, "pl*"))
			for _, n := range leftovers {
				if name := filepath.Base(n); len(name) < 8 || !alive[name[2:8]] {
					t.Errorf("namespace %s left after Cleanup", n)
				}
			}
			mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
			for line := range strings.Lines(string(mountinfo)) {
				i := strings.Index(line, lab.NetnsDir+"/pl")
				if i < 0 {
					continue
				}
				rest := line[i+len(lab.NetnsDir+"/pl"):]
				if len(rest) < 6 || !alive[rest[:6]] {
					t.Errorf("mount left after Cleanup: %s", line)
				}
			}
		})
	}
	for name := range rootVeths(t) {
		if !vethsBefore[name] {
			t.Errorf("veth %s appeared in the root namespace", name)
		}
	}
}
