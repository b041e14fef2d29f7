package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nsIdent identifies a network namespace: nsfs device and inode, as given by
// stat(2) on /proc/PID/ns/net or on a /run/netns bind mount.
type nsIdent struct {
	dev, ino uint64
}

// procStat is what the lab needs from /proc/PID/stat.
type procStat struct {
	state     byte   // field 3: R, S, Z, ...
	startTime uint64 // field 22: start time in clock ticks since boot
}

// readProcStat parses /proc/PID/stat. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(string(data))
}

func parseProcStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat line %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed stat line %q", s)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat start time: %w", err)
	}
	return procStat{state: f[0][0], startTime: start}, nil
}

// processAlive reports whether the process that created a run still runs:
// same PID, same start time (so a recycled PID does not count), not a zombie.
func processAlive(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil {
		return false
	}
	if st.state == 'Z' || st.state == 'X' {
		return false
	}
	return startTicks == 0 || st.startTime == startTicks
}

// statNS returns the identity of the namespace behind path, checking that
// path really is a namespace (an unmounted /run/netns placeholder is a plain
// tmpfs file whose inode would match nothing useful).
func statNS(path string) (nsIdent, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return nsIdent{}, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return nsIdent{}, fmt.Errorf("%s is not a namespace file", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsIdent{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return nsIdent{dev: st.Dev, ino: st.Ino}, nil
}

// processesIn returns the PIDs (other than ours) having at least one thread
// in one of the given namespaces. Threads matter: a multi-threaded program
// can keep a namespace alive from a non-leader thread. Zombies have no
// namespace any more and are naturally skipped.
func processesIn(idents map[nsIdent]bool) ([]int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		tasks, err := os.ReadDir(filepath.Join("/proc", p.Name(), "task"))
		if err != nil {
			continue // exited meanwhile
		}
		for _, t := range tasks {
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", p.Name(), "task", t.Name(), "ns", "net"), &st) != nil {
				continue
			}
			if idents[nsIdent{dev: st.Dev, ino: st.Ino}] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// killProcessesIn SIGKILLs every process living in one of the namespaces and
// waits, until ctx expires, for them to be gone. It returns the killed PIDs.
// Processes are re-scanned until none is left, which also catches children
// forked by a victim before it received its signal.
func killProcessesIn(ctx context.Context, idents map[nsIdent]bool) ([]int, error) {
	if len(idents) == 0 {
		return nil, nil
	}
	var killed []int
	seen := map[int]bool{}
	for {
		pids, err := processesIn(idents)
		if err != nil {
			return killed, err
		}
		if len(pids) == 0 {
			return killed, nil
		}
		for _, pid := range pids {
			err := unix.Kill(pid, unix.SIGKILL)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return killed, fmt.Errorf("kill process %d: %w", pid, err)
			}
			if !seen[pid] {
				seen[pid] = true
				killed = append(killed, pid)
			}
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("processes %v still in namespaces: %w", pids, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
