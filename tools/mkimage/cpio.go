package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// entry is one file of the initramfs.
type entry struct {
	name  string // without a leading slash
	mode  uint32 // type and permission bits (S_IFREG|0755, ...)
	data  []byte // file content, or a symlink's target
	major uint32 // device number of a device node
	minor uint32
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
)

// writeCPIO writes entries as a "newc" archive, the format the kernel
// unpacks into its rootfs. Everything that varies between builds is
// fixed: names sorted (parents before children), mtime 0, owner root,
// inode numbers in order. Same entries, same bytes.
func writeCPIO(w io.Writer, entries []entry) error {
	entries = withParents(entries)
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for i, e := range entries {
		if i > 0 && e.name == entries[i-1].name {
			return fmt.Errorf("initramfs: %s added twice", e.name)
		}
	}
	pos := 0
	put := func(b []byte) error {
		n, err := w.Write(b)
		pos += n
		return err
	}
	pad := func() error {
		if r := pos % 4; r != 0 {
			return put(make([]byte, 4-r))
		}
		return nil
	}
	write := func(ino int, e entry) error {
		nlink := 1
		if e.mode&0o170000 == sIFDIR {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
		if err := put([]byte(hdr + e.name + "\x00")); err != nil {
			return err
		}
		if err := pad(); err != nil {
			return err
		}
		if err := put(e.data); err != nil {
			return err
		}
		return pad()
	}
	for i, e := range entries {
		if err := write(i+1, e); err != nil {
			return err
		}
	}
	return write(0, entry{name: "TRAILER!!!"})
}

// withParents adds the directories the entries need and lack.
func withParents(entries []entry) []entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.name] = true
	}
	out := append([]entry(nil), entries...)
	for _, e := range entries {
		for d := parent(e.name); d != ""; d = parent(d) {
			if !have[d] {
				have[d] = true
				out = append(out, entry{name: d, mode: sIFDIR | 0o755})
			}
		}
	}
	return out
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}
