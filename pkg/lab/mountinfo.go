package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is the part of a mountinfo line (see proc(5)) the lab uses.
type mountEntry struct {
	mountPoint string   // field 5, unescaped
	optional   []string // optional fields (shared:N, master:N, ...)
}

func (e mountEntry) shared() bool {
	for _, o := range e.optional {
		if strings.HasPrefix(o, "shared:") {
			return true
		}
	}
	return false
}

// parseMountinfo parses a mountinfo file, decoding the kernel's octal
// escapes in mount points.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 {
			continue
		}
		e := mountEntry{mountPoint: unescapeMountinfo(f[4])}
		for _, o := range f[6:] {
			if o == "-" {
				break
			}
			e.optional = append(e.optional, o)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// readMountinfo parses our own mount table.
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// unescapeMountinfo decodes the \NNN octal escapes the kernel uses for
// space, tab, newline and backslash in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// labMounts returns the names of lab namespaces mounted in NetnsDir,
// according to our mount table. They matter on their own because a mount
// can outlive its directory entry listing (or hide under it), and an
// unmounted leftover mount keeps the namespace and its links alive.
func labMounts() ([]string, error) {
	entries, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if filepath.Dir(e.mountPoint) != NetnsDir {
			continue
		}
		name := filepath.Base(e.mountPoint)
		if _, ok := parseNSName(name); ok && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// ensureSharedNetnsDir makes NetnsDir a shared mount point, as `ip netns
// add` does. Processes started with `ip netns exec` get a private copy of
// the mount table, including our namespace mounts; with shared propagation
// our unmounts reach those copies, so a deleted namespace is freed at once
// instead of lingering (with its links) until such processes exit.
func ensureSharedNetnsDir() error {
	entries, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, e := range slices.Backward(entries) { // the last mount on a path is the visible one
		if e.mountPoint == NetnsDir {
			if e.shared() {
				return nil
			}
			break
		}
	}
	err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one by binding it onto itself.
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", NetnsDir, err)
		}
		err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetnsDir, err)
	}
	return nil
}
