package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountPoints returns the mount points listed in a mountinfo file (see
// proc(5)): field 5 of each line, with the kernel's octal escapes decoded.
func mountPoints(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		out = append(out, unescapeMountinfo(f[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	mps, err := mountPoints(f)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, mp := range mps {
		if filepath.Dir(mp) != NetnsDir {
			continue
		}
		if _, ok := parseNSName(filepath.Base(mp)); ok {
			names = append(names, filepath.Base(mp))
		}
	}
	return names, nil
}
