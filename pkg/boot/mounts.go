package boot

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Mount is one filesystem the init mounts.
type Mount struct {
	Source, Target, FSType string
	NoSuid, NoDev, NoExec  bool
	Data                   string
}

// Mounts is what the box mounts at boot, in order (a mount inside another
// comes after it). Each is mounted even if the target already holds a
// filesystem (the kernel's devtmpfs on /dev, a container's /proc): the
// new one stacks on top with the right flags and, for proc and sysfs, the
// init's own PID and network namespaces.
func Mounts() []Mount {
	return []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc", NoSuid: true, NoDev: true, NoExec: true},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", NoSuid: true, NoDev: true, NoExec: true},
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", NoSuid: true, Data: "mode=0755"},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", NoSuid: true, NoExec: true, Data: "mode=0620,ptmxmode=0666"},
		{Source: "tmpfs", Target: "/dev/shm", FSType: "tmpfs", NoSuid: true, NoDev: true, NoExec: true, Data: "mode=1777"},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", NoSuid: true, NoDev: true, NoExec: true, Data: "mode=0755"},
		{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", NoSuid: true, NoDev: true, NoExec: true, Data: "mode=1777"},
		{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", NoSuid: true, NoDev: true, NoExec: true},
	}
}

// Options renders the mount's flags and data as in mountinfo, for logs and
// tests.
func (m Mount) Options() string {
	var o []string
	if m.NoSuid {
		o = append(o, "nosuid")
	}
	if m.NoDev {
		o = append(o, "nodev")
	}
	if m.NoExec {
		o = append(o, "noexec")
	}
	if m.Data != "" {
		o = append(o, m.Data)
	}
	return strings.Join(o, ",")
}

// MountEntry is one line of /proc/self/mountinfo.
type MountEntry struct {
	ID, Parent int
	Target     string
	Options    string // per-mount options: rw,nosuid,...
	FSType     string
	Source     string
}

// ParseMountinfo reads a mountinfo file (proc(5)).
func ParseMountinfo(r io.Reader) ([]MountEntry, error) {
	var out []MountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		var e MountEntry
		if _, err := fmt.Sscan(f[0], &e.ID); err != nil {
			return nil, fmt.Errorf("mountinfo: mount id %q: %w", f[0], err)
		}
		if _, err := fmt.Sscan(f[1], &e.Parent); err != nil {
			return nil, fmt.Errorf("mountinfo: parent id %q: %w", f[1], err)
		}
		e.Target = unescapeOctal(f[4])
		e.Options = f[5]
		e.FSType = f[sep+1]
		e.Source = unescapeOctal(f[sep+2])
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// Top returns the entry visible at target: the last one mounted there.
func Top(entries []MountEntry, target string) (MountEntry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Target == target {
			return entries[i], true
		}
	}
	return MountEntry{}, false
}

// unescapeOctal decodes the kernel's \ooo escapes (space, tab, newline,
// backslash) in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
