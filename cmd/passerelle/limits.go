package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// raiseFileLimit lifts RLIMIT_NOFILE to the kernel's maximum (fs.nr_open)
// before anything opens sockets. As PID 1 the daemon inherits init's
// limit, 1024 (4096 hard): a few thousand DNS-over-TCP connections used to
// exhaust it, and the resolver's upstream sockets with it (issue 12). The
// DNS filter bounds its connections well below the new limit. Without the
// privilege to raise the hard limit, the soft one goes up to it.
func raiseFileLimit(log *slog.Logger) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		log.Warn("file limit not read", "err", err)
		return
	}
	want := uint64(1 << 20) // the kernel's default nr_open
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			want = n
		}
	}
	want = max(want, old.Max)
	lim := syscall.Rlimit{Cur: want, Max: want}
	hardErr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	if hardErr != nil {
		// Without CAP_SYS_RESOURCE (a container, a test): up to the hard
		// limit only.
		lim = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("file limit not raised", "event", "file-limit", "soft", old.Cur, "hard", old.Max, "err", err)
			return
		}
	}
	attrs := []any{"event", "file-limit", "soft", lim.Cur, "hard", lim.Max, "was_soft", old.Cur, "was_hard", old.Max}
	if hardErr != nil {
		attrs = append(attrs, "hard_not_raised", hardErr.Error())
	}
	log.Info("file limit raised", attrs...)
}

// memoryFraction is the share of the board's memory the Go runtime aims to
// stay under (debug.SetMemoryLimit): the rest is the kernel's (conntrack,
// sockets, page cache) and tailscaled's. The limit is soft: past it the
// garbage collector runs harder and returns memory to the system sooner,
// so a flood's transient garbage does not stay resident (issue 12).
const memoryFraction = 0.5

// setMemoryLimit applies --memory-limit: "auto" (memoryFraction of
// MemTotal, unless GOMEMLIMIT is set in the environment), "off", or a size
// (bytes, or with a KiB, MiB, GiB suffix).
func setMemoryLimit(log *slog.Logger, flag string) error {
	var limit int64
	source := flag
	switch {
	case flag == "off":
		debug.SetMemoryLimit(math.MaxInt64)
		log.Info("memory limit", "event", "memory-limit", "limit_bytes", "off")
		return nil
	case flag == "auto" || flag == "":
		if v := os.Getenv("GOMEMLIMIT"); v != "" {
			log.Info("memory limit", "event", "memory-limit", "limit_bytes", debug.SetMemoryLimit(-1), "source", "GOMEMLIMIT")
			return nil
		}
		total, err := memTotal()
		if err != nil {
			log.Warn("memory limit not set", "event", "memory-limit", "err", err)
			return nil
		}
		limit, source = int64(float64(total)*memoryFraction), fmt.Sprintf("%.0f%% of MemTotal %d", memoryFraction*100, total)
	default:
		n, err := parseSize(flag)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		limit = n
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "event", "memory-limit", "limit_bytes", limit, "source", source)
	return nil
}

// memTotal reads the board's memory from /proc/meminfo.
func memTotal() (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("expected auto, off or a size such as 256MiB, got %q", s)
	}
	return n * mult, nil
}
