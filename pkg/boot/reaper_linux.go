package boot

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NewReaper returns a reaper; grace is how long an untracked zombie child
// is left for its owner to wait for before the reaper takes it (0: 2 s).
func NewReaper(grace time.Duration) *Reaper {
	if grace <= 0 {
		grace = 2 * time.Second
	}
	return &Reaper{state: newReapState(grace)}
}

// Run reaps orphans until ctx is done: on every SIGCHLD, and while zombies
// wait for their grace period to end.
func (r *Reaper) Run(ctx context.Context, log *slog.Logger) error {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	self := os.Getpid()
	var retry <-chan time.Time
	for {
		procs, err := listProcs("/proc")
		if err != nil {
			log.Error("reaper: cannot list processes", "err", err)
		}
		r.mu.Lock()
		reap, pending := r.state.due(self, procs, time.Now())
		r.mu.Unlock()
		for _, pid := range reap {
			var ws unix.WaitStatus
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			r.mu.Lock()
			r.state.reaped(pid)
			r.mu.Unlock()
			if err != nil || got != pid {
				continue // its owner waited for it after all
			}
			log.Info("reaped orphan", "event", "orphan-reaped", "pid", pid, "status", describeWait(ws))
		}
		retry = nil
		if pending {
			retry = time.After(r.state.grace / 2)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sig:
		case <-retry:
		}
	}
}

func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return "exit code " + strconv.Itoa(ws.ExitStatus())
}

// listProcs reads pid, parent and state of every process in procDir.
func listProcs(procDir string) ([]procEntry, error) {
	d, err := os.Open(procDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []procEntry
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(procDir + "/" + n + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if e, ok := parseStat(pid, string(data)); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// parseStat reads state (field 3) and ppid (field 4) of a /proc/PID/stat
// line; the command name may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(pid int, s string) (procEntry, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procEntry{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return procEntry{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procEntry{}, false
	}
	return procEntry{pid: pid, ppid: ppid, state: f[0][0]}, true
}
