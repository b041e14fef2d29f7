package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	gobuild "go/build"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the binaries built for this test binary; TestMain removes
// it at the end.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "passerelle-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries are the programs under test.
type binaries struct {
	passerelle, ctl string
}

// build compiles both programs from this work tree, once per test binary
// and only when a test needs them (a run as non-root builds nothing).
var build = sync.OnceValues(func() (binaries, error) {
	b := binaries{filepath.Join(binDir, "passerelle"), filepath.Join(binDir, "passerellectl")}
	cmd := exec.Command(goTool(), "build", "-o", binDir+"/", "./cmd/passerelle", "./cmd/passerellectl")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return b, nil
})

func bins(t *testing.T) binaries {
	t.Helper()
	b, err := build()
	if err != nil {
		t.Fatalf("build the firmware: %v", err)
	}
	return b
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("system tests need root (network namespaces, nftables, mounts); run `sudo make test`")
	}
	if testing.Short() {
		t.Skip("system test skipped in -short mode")
	}
}

// demoConfig is the path of configs/demo.yaml from this directory.
const demoConfig = "../configs/demo.yaml"

func readDemo(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// record is one line of the daemon's JSON log. Numbers stay json.Number,
// so an attribute compares as the text the daemon wrote.
type record map[string]any

// str is an attribute as text ("" when absent).
func (r record) str(key string) string {
	v, ok := r[key]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// at is the record's time stamp.
func (r record) at() time.Time {
	ts, _ := time.Parse(time.RFC3339Nano, r.str("time"))
	return ts
}

// is reports whether r is the event with these attributes.
func (r record) is(event string, attrs map[string]string) bool {
	if r.str("event") != event {
		return false
	}
	for k, v := range attrs {
		if r.str(k) != v {
			return false
		}
	}
	return true
}

// eventLog collects a child's output, the daemon run with `--log-format
// json`: each line that is a JSON object is kept as a record; every byte
// is kept as text for the failure report.
type eventLog struct {
	mu      sync.Mutex
	text    bytes.Buffer
	pending []byte
	recs    []record
}

func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text.Write(p)
	l.pending = append(l.pending, p...)
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			break
		}
		dec := json.NewDecoder(bytes.NewReader(l.pending[:i]))
		dec.UseNumber()
		var r record
		if dec.Decode(&r) == nil {
			l.recs = append(l.recs, r)
		}
		l.pending = append(l.pending[:0], l.pending[i+1:]...)
	}
	return len(p), nil
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

// mark is the number of records so far: a starting point for waits and
// searches.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// find returns the records from mark on that are event with attrs.
func (l *eventLog) find(mark int, event string, attrs map[string]string) []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []record
	for _, r := range l.recs[min(mark, len(l.recs)):] {
		if r.is(event, attrs) {
			out = append(out, r)
		}
	}
	return out
}

// records returns every record from mark on.
func (l *eventLog) records(mark int) []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]record(nil), l.recs[min(mark, len(l.recs)):]...)
}

// proc is one running process of the firmware and its log.
type proc struct {
	cmd  *exec.Cmd
	log  *eventLog
	from int // the log's first record of this process (restarts share a log)
	done chan struct{}
	err  error // exit status, set before done is closed
}

// startProc starts cmd (with start, e.g. in a namespace) logging to log,
// and ends it when the test ends, showing the log if the test failed.
func startProc(t *testing.T, cmd *exec.Cmd, log *eventLog, start func(*exec.Cmd) error) *proc {
	t.Helper()
	p := &proc{cmd: cmd, log: log, from: log.mark(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = log, log
	if err := start(cmd); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if _, ok := p.wait(10 * time.Second); !ok {
			t.Errorf("%s (pid %d) did not exit after SIGKILL", cmd.Path, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("firmware log:\n%s", log.String())
		}
	})
	return p
}

// wait waits up to timeout for the process to end and returns its exit
// status.
func (p *proc) wait(timeout time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (error, bool) { return p.wait(0) }

// mark is where the log is now: waitEventAfter(mark, ...) sees only what
// the daemon logs from here on.
func (p *proc) mark() int { return p.log.mark() }

// waitEvent waits until this process logs event with the given attributes
// (compared as text: "true", "42", "renater") and returns the record's
// time. It fails the test at once if the process exits first.
func (p *proc) waitEvent(t *testing.T, timeout time.Duration, event string, attrs map[string]string) time.Time {
	t.Helper()
	return p.waitEventAfter(t, p.from, timeout, event, attrs)
}

// waitEventAfter is waitEvent counting from a mark.
func (p *proc) waitEventAfter(t *testing.T, mark int, timeout time.Duration, event string, attrs map[string]string) time.Time {
	t.Helper()
	r := p.waitRecord(t, mark, timeout, event, attrs)
	return r.at()
}

// waitRecord is waitEventAfter returning the whole record.
func (p *proc) waitRecord(t *testing.T, mark int, timeout time.Duration, event string, attrs map[string]string) record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if rs := p.log.find(mark, event, attrs); len(rs) > 0 {
			return rs[0]
		}
		if err, ok := p.exited(); ok {
			if rs := p.log.find(mark, event, attrs); len(rs) > 0 {
				return rs[0]
			}
			t.Fatalf("firmware exited (%v) before the event %s", err, describe(event, attrs))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %s within %s", describe(event, attrs), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// events returns this process's records of event with attrs, in order.
func (p *proc) events(event string, attrs map[string]string) []record {
	return p.log.find(p.from, event, attrs)
}

func describe(event string, attrs map[string]string) string {
	var kv []string
	for k, v := range attrs {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.TrimSpace(event + " " + strings.Join(kv, " "))
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goTool is the go command to build with: the one on PATH, else the
// toolchain's own.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(gobuild.Default.GOROOT, "bin", "go")
}

// nocKey is a NOC signing key made by passerellectl keygen: its file is
// where keygen wrote it; KeyID and PublicKey are the name and key of its
// entry in the box's trusted_keys.
type nocKey struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
}

// nocKeygen makes a NOC key named id at path with the ctl binary.
func nocKeygen(t *testing.T, ctl, id, path string) nocKey {
	t.Helper()
	out, err := exec.Command(ctl, "keygen", "--json", "--id", id, "--out", path).Output()
	if err != nil {
		t.Fatalf("passerellectl keygen: %v", err)
	}
	var k nocKey
	if err := json.Unmarshal(out, &k); err != nil {
		t.Fatalf("keygen output %q: %v", out, err)
	}
	return k
}
