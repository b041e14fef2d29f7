package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestCPIOIsReproducibleAndComplete(t *testing.T) {
	files := []entry{
		{name: "init", mode: sIFREG | 0o755, data: []byte("binary")},
		{name: "lib/modules/6.1/kernel/fs/ext4/ext4.ko", mode: sIFREG | 0o644, data: []byte("ko")},
		{name: "sbin/mkfs.ext4", mode: sIFLNK | 0o777, data: []byte("mke2fs")},
		{name: "dev/console", mode: sIFCHR | 0o600, major: 5, minor: 1},
	}
	var a, b bytes.Buffer
	if err := writeCPIO(&a, files); err != nil {
		t.Fatal(err)
	}
	rev := []entry{files[3], files[2], files[1], files[0]}
	if err := writeCPIO(&b, rev); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the archive depends on the order of its inputs")
	}
	// Walk the newc records: parents come first, then the trailer.
	var names []string
	data := a.Bytes()
	for off := 0; off < len(data); {
		h := string(data[off : off+110])
		if !strings.HasPrefix(h, "070701") {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) int {
			var v int
			for _, c := range h[6+8*i : 14+8*i] {
				v = v*16 + strings.IndexRune("0123456789abcdef", c)
			}
			return v
		}
		if mtime := field(5); mtime != 0 {
			t.Errorf("mtime %d, want 0", mtime)
		}
		nameLen, size := field(11), field(6)
		name := string(data[off+110 : off+110+nameLen-1])
		names = append(names, name)
		off = (off + 110 + nameLen + 3) &^ 3
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			break
		}
	}
	want := "dev dev/console init lib lib/modules lib/modules/6.1 lib/modules/6.1/kernel lib/modules/6.1/kernel/fs lib/modules/6.1/kernel/fs/ext4 lib/modules/6.1/kernel/fs/ext4/ext4.ko sbin sbin/mkfs.ext4 TRAILER!!!"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries:\n%s\nwant\n%s", got, want)
	}
	if err := writeCPIO(&b, append(files, files[0])); err == nil {
		t.Error("a name added twice was accepted")
	}
}

func TestGPTDisk(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	specs := []partSpec{{name: "perm", typ: linuxFS}}
	ps, err := writeGPTDisk(filepath.Join(dir, "a.img"), size, specs, "passerelle/test")
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	writeGPTDisk(filepath.Join(dir, "b.img"), size, specs, "passerelle/test")
	a, _ := os.ReadFile(filepath.Join(dir, "a.img"))
	b, _ := os.ReadFile(filepath.Join(dir, "b.img"))
	if !bytes.Equal(a, b) {
		t.Error("two disks of the same inputs differ")
	}
	if a[510] != 0x55 || a[511] != 0xAA || a[446+4] != 0xEE {
		t.Error("no protective MBR")
	}
	n := uint64(size / sector)
	check := func(lba uint64, wantEntries uint64) {
		h := a[lba*sector : lba*sector+sector]
		if string(h[:8]) != "EFI PART" {
			t.Fatalf("LBA %d: no GPT header", lba)
		}
		hdr := append([]byte(nil), h[:92]...)
		crc := binary.LittleEndian.Uint32(hdr[16:])
		binary.LittleEndian.PutUint32(hdr[16:], 0)
		if crc32.ChecksumIEEE(hdr) != crc {
			t.Errorf("LBA %d: header CRC mismatch", lba)
		}
		if got := binary.LittleEndian.Uint64(h[24:]); got != lba {
			t.Errorf("LBA %d: says it is at %d", lba, got)
		}
		el := binary.LittleEndian.Uint64(h[72:])
		if el != wantEntries {
			t.Errorf("LBA %d: entries at %d, want %d", lba, el, wantEntries)
		}
		entries := a[el*sector : el*sector+numEntries*entrySize]
		if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(h[88:]) {
			t.Errorf("LBA %d: entries CRC mismatch", lba)
		}
		var name []uint16
		for i := 56; i < 128; i += 2 {
			if c := binary.LittleEndian.Uint16(entries[i:]); c != 0 {
				name = append(name, c)
			}
		}
		if got := string(utf16.Decode(name)); got != "perm" {
			t.Errorf("partition name %q", got)
		}
		if !bytes.Equal(entries[:16], linuxFS[:]) {
			t.Error("partition type is not Linux filesystem")
		}
	}
	check(1, 2)
	check(n-1, n-1-entrySectors)
	if p.start != 2048 || (p.end+1)%2048 != 0 || p.end >= n-1-entrySectors {
		t.Errorf("partition %d-%d on %d sectors: not aligned or overlapping the backup table", p.start, p.end, n)
	}
}

func TestGPTDiskPartitionsInOrderWithContent(t *testing.T) {
	dir := t.TempDir()
	content := filepath.Join(dir, "slot.img")
	os.WriteFile(content, bytes.Repeat([]byte("slot"), 1<<18), 0o644) // 1 MiB
	specs := []partSpec{
		{name: "esp", typ: efiSys, size: 2 << 20},
		{name: "system-a", typ: linuxFS, size: 4 << 20, content: content},
		{name: "system-b", typ: linuxFS, size: 4 << 20},
		{name: "perm", typ: linuxFS},
	}
	img := filepath.Join(dir, "disk.img")
	ps, err := writeGPTDisk(img, 16<<20, specs, "passerelle/test")
	if err != nil {
		t.Fatal(err)
	}
	var prev uint64
	for i, p := range ps {
		if p.name != specs[i].name || p.start%2048 != 0 || p.start <= prev {
			t.Errorf("partition %d: %+v (after %d)", i, p, prev)
		}
		prev = p.end
	}
	disk, _ := os.ReadFile(img)
	if got := disk[ps[1].start*sector : ps[1].start*sector+1<<20]; !bytes.Equal(got, bytes.Repeat([]byte("slot"), 1<<18)) {
		t.Error("system-a does not hold the slot image")
	}
	if _, err := writeGPTDisk(img, 16<<20, []partSpec{{name: "tiny", typ: linuxFS, size: 1 << 20, content: content}, {name: "perm", typ: linuxFS}}, "x"); err != nil {
		t.Errorf("an image exactly the partition's size: %v", err)
	}
	os.WriteFile(content, make([]byte, 1<<20+1), 0o644)
	if _, err := writeGPTDisk(img, 16<<20, []partSpec{{name: "tiny", typ: linuxFS, size: 1 << 20, content: content}, {name: "perm", typ: linuxFS}}, "x"); err == nil {
		t.Error("an image larger than its partition was written")
	}
	if _, err := writeGPTDisk(img, 16<<20, []partSpec{{name: "perm", typ: linuxFS}, {name: "late", typ: linuxFS, size: 1 << 20}}, "x"); err == nil {
		t.Error("a partition after the one taking the rest of the disk was accepted")
	}
}
