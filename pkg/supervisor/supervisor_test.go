package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

// These tests run real goroutines and child processes with a fast policy:
// they check behaviour, never durations.

func fastPolicy() Policy {
	return Policy{
		BackoffBase:     20 * time.Millisecond,
		BackoffMax:      80 * time.Millisecond,
		StableAfter:     10 * time.Second,
		CrashLoopExits:  5,
		CrashLoopWindow: time.Minute,
		FailedRetry:     time.Minute,
		StopTimeout:     300 * time.Millisecond,
		ReadyTimeout:    5 * time.Second,
	}
}

// logBuffer collects JSON log records.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newTestSupervisor(t *testing.T, p Policy, w *health.Registry) (*Supervisor, *logBuffer, *prometheus.Registry) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	s, err := New(box.Deps{Log: log, Metrics: reg, Health: w}, Options{Policy: p, OutputSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		if t.Failed() {
			t.Logf("supervisor log:\n%s", logs.b.String())
		}
	})
	return s, logs, reg
}

func sh(script string) *Command { return &Command{Path: "/bin/sh", Args: []string{"-c", script}} }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusOf(s *Supervisor, name string) Status {
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

// severity returns the severity of a raised warning.
func severity(h *health.Registry, code string) (health.Severity, bool) {
	w, ok := h.Get(code)
	return w.Severity, ok
}

func TestCrashingChildRestartsWithGrowingDelaysThenFails(t *testing.T) {
	w := health.New(nil)
	s, logs, reg := newTestSupervisor(t, fastPolicy(), w)
	if err := s.Add(Spec{Name: "crasher", Command: sh("echo boom; echo oops >&2; exit 3"), Critical: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "crasher failed", func() bool { return statusOf(s, "crasher").State == Failed })

	var delays []string
	for _, r := range logs.records("service exited; restarting") {
		delays = append(delays, time.Duration(r["after"].(float64)).String())
	}
	if want := []string{"20ms", "40ms", "80ms", "80ms"}; strings.Join(delays, " ") != strings.Join(want, " ") {
		t.Errorf("restart delays = %v, want %v", delays, want)
	}
	st := statusOf(s, "crasher")
	if st.Restarts != 4 || st.LastExit != "exit code 3" || st.NextStart.IsZero() {
		t.Errorf("status = %+v, want 4 restarts, last exit code 3, a next start", st)
	}
	if sev, ok := severity(w, "service-failed:crasher"); !ok || sev != health.Critical {
		t.Errorf("warning service-failed:crasher = %v %v, want critical", sev, ok)
	}
	if err := s.Healthy(); err == nil {
		t.Error("Healthy() = nil with a failed critical service")
	}
	stdout, stderr, _ := s.Output("crasher")
	if strings.Count(string(stdout), "boom\n") != 5 || strings.Count(string(stderr), "oops\n") != 5 {
		t.Errorf("captured stdout %q stderr %q, want 5 lines each", stdout, stderr)
	}
	if got := testutil.ToFloat64(s.restarts.WithLabelValues("crasher")); got != 4 {
		t.Errorf("restarts metric = %v, want 4", got)
	}
	if got := testutil.ToFloat64(s.failed.WithLabelValues("crasher")); got != 1 {
		t.Errorf("failed metric = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("registry gathers %d series, %v", n, err)
	}
}

func TestDoNotRestartExitCodeFinishesTheService(t *testing.T) {
	s, _, _ := newTestSupervisor(t, fastPolicy(), nil)
	s.Add(Spec{Name: "oneshot", Command: sh(fmt.Sprintf("exit %d", DoNotRestart))})
	s.Start(context.Background())
	waitFor(t, "oneshot done", func() bool { return statusOf(s, "oneshot").State == Finished })
	time.Sleep(100 * time.Millisecond) // several backoff periods: no restart
	if st := statusOf(s, "oneshot"); st.Restarts != 0 || st.State != Finished {
		t.Errorf("status = %+v, want finished without restarts", st)
	}
}

func TestStopGoesInReverseStartOrder(t *testing.T) {
	s, _, _ := newTestSupervisor(t, fastPolicy(), nil)
	var mu sync.Mutex
	var order []string
	for _, name := range []string{"first", "second", "third"} {
		s.Add(Spec{Name: name, Run: func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}})
	}
	s.Add(Spec{Name: "child", Command: sh("trap 'echo term; exit 0' TERM; while :; do sleep 0.01; done")})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "child running", func() bool { return statusOf(s, "child").State == Running })
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "third second first" {
		t.Errorf("internal services stopped in order %q, want third second first", got)
	}
	for _, st := range s.Status() {
		if st.State != Stopped {
			t.Errorf("%s is %s after Stop", st.Name, st.State)
		}
	}
}

func TestStopKillsProcessGroupThatIgnoresSIGTERM(t *testing.T) {
	s, logs, _ := newTestSupervisor(t, fastPolicy(), nil)
	// The shell ignores SIGTERM; its background sleep is in its group.
	s.Add(Spec{Name: "stubborn", Command: sh("trap '' TERM; sleep 60 & echo $!; while :; do sleep 0.01; done")})
	s.Start(context.Background())
	var grandchild int
	waitFor(t, "grandchild pid", func() bool {
		out, _, _ := s.Output("stubborn")
		grandchild, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		return grandchild > 0
	})
	leader := statusOf(s, "stubborn").PID
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := logs.records("service stopped")
	if len(recs) != 1 || recs[0]["killed"] != true {
		t.Errorf("stop records %v, want one with killed=true", recs)
	}
	for _, pid := range []int{leader, grandchild} {
		waitFor(t, fmt.Sprintf("pid %d gone", pid), func() bool { return !running(pid) })
	}
}

func TestStartWaitsForReadinessInOrder(t *testing.T) {
	s, _, _ := newTestSupervisor(t, fastPolicy(), nil)
	var aReady atomic.Bool
	var bStartedEarly atomic.Bool
	s.Add(Spec{
		Name: "a",
		Run: func(ctx context.Context) error {
			time.Sleep(150 * time.Millisecond)
			aReady.Store(true)
			<-ctx.Done()
			return nil
		},
		Ready: func(context.Context) error {
			if !aReady.Load() {
				return errors.New("not yet")
			}
			return nil
		},
	})
	s.Add(Spec{Name: "b", Run: func(ctx context.Context) error {
		if !aReady.Load() {
			bStartedEarly.Store(true)
		}
		<-ctx.Done()
		return nil
	}})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b running", func() bool { return statusOf(s, "b").State == Running })
	if bStartedEarly.Load() {
		t.Error("b started before a was ready")
	}
}

func TestInternalServicePanicIsRestarted(t *testing.T) {
	s, logs, _ := newTestSupervisor(t, fastPolicy(), nil)
	var runs atomic.Int32
	s.Add(Spec{Name: "fragile", Run: func(ctx context.Context) error {
		if runs.Add(1) == 1 {
			panic("first run breaks")
		}
		<-ctx.Done()
		return nil
	}})
	s.Start(context.Background())
	waitFor(t, "second run", func() bool { return runs.Load() == 2 })
	if recs := logs.records("service exited; restarting"); len(recs) != 1 || !strings.Contains(recs[0]["exit"].(string), "panic: first run breaks") {
		t.Errorf("restart records %v, want one naming the panic", recs)
	}
}

func TestAddValidates(t *testing.T) {
	s, _, _ := newTestSupervisor(t, fastPolicy(), nil)
	run := func(context.Context) error { return nil }
	tests := []struct {
		name string
		spec Spec
	}{
		{"bad name", Spec{Name: "Bad Name", Run: run}},
		{"both kinds", Spec{Name: "x", Run: run, Command: sh("true")}},
		{"neither kind", Spec{Name: "x"}},
		{"relative path", Spec{Name: "x", Command: &Command{Path: "sh"}}},
	}
	for _, tt := range tests {
		if err := s.Add(tt.spec); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if err := s.Add(Spec{Name: "dup", Run: run}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Spec{Name: "dup", Run: run}); err == nil {
		t.Error("duplicate name accepted")
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestChildDiesWithTheDaemon runs a supervisor in a helper process (this
// test binary again), kills that process with SIGKILL, and checks that its
// child did not survive it.
func TestChildDiesWithTheDaemon(t *testing.T) {
	if os.Getenv("SUPERVISOR_HELPER") == "1" {
		helperDaemon()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithTheDaemon$")
	cmd.Env = append(os.Environ(), "SUPERVISOR_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "child ")))
	if err != nil || !running(child) {
		t.Fatalf("helper said %q", line)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	waitFor(t, "child killed with its daemon", func() bool { return !running(child) })
}

func helperDaemon() {
	s, err := New(box.Deps{}, Options{Policy: fastPolicy()})
	if err != nil {
		panic(err)
	}
	s.Add(Spec{Name: "sleeper", Command: &Command{Path: "/bin/sleep", Args: []string{"60"}}})
	s.Start(context.Background())
	for statusOf(s, "sleeper").State != Running {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("child %d\n", statusOf(s, "sleeper").PID)
	select {}
}

func TestStopDuringStartDoesNotWaitForReadiness(t *testing.T) {
	p := fastPolicy()
	p.ReadyTimeout = time.Minute
	s, _, _ := newTestSupervisor(t, p, nil)
	var laterStarted atomic.Bool
	s.Add(Spec{
		Name:  "never-ready",
		Run:   func(ctx context.Context) error { <-ctx.Done(); return nil },
		Ready: func(context.Context) error { return errors.New("not yet") },
	})
	s.Add(Spec{Name: "later", Run: func(ctx context.Context) error {
		laterStarted.Store(true)
		<-ctx.Done()
		return nil
	}})
	started := make(chan error, 1)
	go func() { started <- s.Start(context.Background()) }()
	waitFor(t, "never-ready starting", func() bool { return statusOf(s, "never-ready").State == Starting })
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	for _, c := range []chan error{stopped, started} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("Start or Stop hung")
		}
	}
	if laterStarted.Load() {
		t.Error("a service was started after Stop")
	}
}

func TestFailedServiceIsRetriedAfterFailedRetry(t *testing.T) {
	p := fastPolicy()
	p.FailedRetry = 100 * time.Millisecond
	s, logs, _ := newTestSupervisor(t, p, nil)
	s.Add(Spec{Name: "broken", Command: sh("exit 1")})
	s.Start(context.Background())
	// 5 exits mark it failed; the retry exits at once: failed again.
	waitFor(t, "failed twice", func() bool {
		return len(logs.records("service is crash-looping; marked failed")) >= 2
	})
	if st := statusOf(s, "broken"); st.Restarts < 5 {
		t.Errorf("restarts = %d, want the retry counted", st.Restarts)
	}
}

// TestRestartOnRequest: a running child is stopped and started again at
// once with a new pid, an internal service gets a new context, a failed
// one starts without waiting for its retry, and none of it counts as a
// crash; unknown names are refused.
func TestRestartOnRequest(t *testing.T) {
	s, logs, _ := newTestSupervisor(t, fastPolicy(), nil)
	var runs atomic.Int32
	s.Add(Spec{Name: "child", Command: sh("trap 'exit 0' TERM; while :; do sleep 0.01; done")})
	s.Add(Spec{Name: "inner", Run: func(ctx context.Context) error { runs.Add(1); <-ctx.Done(); return nil }})
	s.Add(Spec{Name: "oneshot", Command: sh(fmt.Sprintf("exit %d", DoNotRestart))})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "child running", func() bool { return statusOf(s, "child").State == Running })
	waitFor(t, "oneshot finished", func() bool { return statusOf(s, "oneshot").State == Finished })
	pid := statusOf(s, "child").PID
	for _, name := range []string{"child", "inner", "oneshot"} {
		if err := s.Restart(name); err != nil {
			t.Fatalf("Restart(%s): %v", name, err)
		}
	}
	waitFor(t, "child running with a new pid", func() bool {
		st := statusOf(s, "child")
		return st.State == Running && st.PID != pid && st.PID != 0
	})
	waitFor(t, "inner started again", func() bool { return runs.Load() == 2 && statusOf(s, "inner").State == Running })
	waitFor(t, "oneshot ran again", func() bool { return statusOf(s, "oneshot").Restarts == 1 })
	if running(pid) {
		t.Errorf("the old child %d still runs", pid)
	}
	recs := logs.records("service restarted on request")
	if len(recs) != 3 {
		t.Errorf("%d restart records, want 3: %v", len(recs), recs)
	}
	for _, r := range recs {
		if r["event"] != "service-restart" || r["requested"] != true {
			t.Errorf("restart record %v", r)
		}
	}
	if st := statusOf(s, "child"); st.Restarts != 1 || st.State != Running {
		t.Errorf("child after a restart: %+v", st)
	}
	if err := s.Restart("nope"); err == nil || !strings.Contains(err.Error(), "not supervised") {
		t.Errorf("Restart(nope) = %v", err)
	}
}

// TestRestartDoesNotCountAsCrash: many restarts in a row never mark a
// service failed.
func TestRestartDoesNotCountAsCrash(t *testing.T) {
	s, _, _ := newTestSupervisor(t, fastPolicy(), nil)
	s.Add(Spec{Name: "inner", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }})
	s.Start(context.Background())
	for i := range 8 {
		waitFor(t, "inner running", func() bool { return statusOf(s, "inner").State == Running && statusOf(s, "inner").Restarts == i })
		if err := s.Restart("inner"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "inner running", func() bool { return statusOf(s, "inner").Restarts == 8 && statusOf(s, "inner").State == Running })
}

// TestExitingServiceDoesNotHoldTheStartOrder: a service that exits before
// it was ever ready (tailscaled without its auth key) is restarted with
// backoff, and the services after it start at once instead of waiting out
// ReadyTimeout (a minute here: Start would not return in the test's time).
func TestExitingServiceDoesNotHoldTheStartOrder(t *testing.T) {
	p := fastPolicy()
	p.ReadyTimeout = time.Minute
	p.CrashLoopExits = 1000 // restarted, never marked failed (which would also free the order)
	s, _, _ := newTestSupervisor(t, p, nil)
	s.Add(Spec{
		Name:  "exits",
		Run:   func(context.Context) error { return errors.New("no auth key") },
		Ready: func(context.Context) error { return errors.New("not yet") },
	})
	s.Add(Spec{Name: "later", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }})
	started := make(chan error, 1)
	go func() { started <- s.Start(context.Background()) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start still waiting for a service that exited")
	}
	waitFor(t, "later running", func() bool { return statusOf(s, "later").State == Running })
}
