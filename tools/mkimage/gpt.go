package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"unicode/utf16"
)

// A GPT disk written without root or loop devices. go-diskfs can do this
// too, but it would bring five modules into go.mod for what is two
// headers, two entry tables and a protective MBR (UEFI 2.10, section 5);
// the unit test checks the result.

const (
	sector     = 512
	numEntries = 128
	entrySize  = 128
	// entrySectors: 128 entries of 128 bytes.
	entrySectors = numEntries * entrySize / sector
	// firstLBA aligns the partitions on 1 MiB, as partitioning tools do.
	firstLBA = 2048
	align    = 2048
)

// Partition type GUIDs: a Linux filesystem, and the EFI system partition
// that UEFI firmware looks for \EFI\BOOT\BOOTAA64.EFI on.
var (
	linuxFS = mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	efiSys  = mustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
)

// partSpec asks for one partition: size 0 takes the rest of the disk
// (the last one only); content, if any, is written at its start.
type partSpec struct {
	name    string
	typ     [16]byte
	size    int64
	content string // file to copy in
}

// partition is one GPT partition as written.
type partition struct {
	name       string
	start, end uint64 // LBAs, inclusive
	typ, guid  [16]byte
}

// writeGPTDisk creates path, size bytes (sparse), with the partitions of
// specs in order from 1 MiB, each aligned on 1 MiB. Their GUIDs derive
// from seed: same inputs, same bytes.
func writeGPTDisk(path string, size int64, specs []partSpec, seed string) ([]partition, error) {
	if size%sector != 0 || size < 4<<20 {
		return nil, fmt.Errorf("disk size %d: want a multiple of %d of at least 4 MiB", size, sector)
	}
	if len(specs) == 0 || len(specs) > numEntries {
		return nil, fmt.Errorf("%d partitions: want 1 to %d", len(specs), numEntries)
	}
	n := uint64(size / sector)
	lastUsable := n - 1 - entrySectors - 1
	// The last partition ends on a 1 MiB boundary too.
	diskEnd := (lastUsable+1)/align*align - 1
	entries := make([]byte, numEntries*entrySize)
	var parts []partition
	next := uint64(firstLBA)
	for i, s := range specs {
		if s.size%(align*sector) != 0 {
			return nil, fmt.Errorf("partition %s: size %d is not a multiple of 1 MiB", s.name, s.size)
		}
		end := diskEnd
		if s.size > 0 {
			end = next + uint64(s.size/sector) - 1
		} else if i != len(specs)-1 {
			return nil, fmt.Errorf("partition %s: only the last partition may take the rest of the disk", s.name)
		}
		if end > diskEnd || end < next {
			return nil, fmt.Errorf("partition %s does not fit on a disk of %d MiB", s.name, size>>20)
		}
		p := partition{name: s.name, start: next, end: end, typ: s.typ, guid: guidFrom(seed + "/" + s.name)}
		e := entries[i*entrySize:]
		copy(e[0:], p.typ[:])
		copy(e[16:], p.guid[:])
		binary.LittleEndian.PutUint64(e[32:], p.start)
		binary.LittleEndian.PutUint64(e[40:], p.end)
		name := utf16.Encode([]rune(s.name))
		if len(name) > 36 {
			return nil, fmt.Errorf("partition name %q longer than 36 characters", s.name)
		}
		for j, c := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
		parts = append(parts, p)
		next = end + 1
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	diskGUID := guidFrom(seed + "/disk")
	header := func(current, backup, entriesLBA uint64) []byte {
		h := make([]byte, sector)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], backup)
		binary.LittleEndian.PutUint64(h[40:], 2+entrySectors)
		binary.LittleEndian.PutUint64(h[48:], lastUsable)
		copy(h[56:], diskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], numEntries)
		binary.LittleEndian.PutUint32(h[84:], entrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, sector)
	pe := mbr[446:]
	copy(pe, []byte{0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(n-1, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA

	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	for _, w := range []struct {
		lba  uint64
		data []byte
	}{
		{0, mbr},
		{1, header(1, n-1, 2)},
		{2, entries},
		{n - 1 - entrySectors, entries},
		{n - 1, header(n-1, 1, n-1-entrySectors)},
	} {
		if _, err := f.WriteAt(w.data, int64(w.lba*sector)); err != nil {
			return nil, err
		}
	}
	for i, s := range specs {
		if s.content == "" {
			continue
		}
		if err := copyInto(f, s.content, parts[i]); err != nil {
			return nil, err
		}
	}
	return parts, f.Close()
}

// copyInto writes the file src at the start of partition p, which it
// must fit in.
func copyInto(f *os.File, src string, p partition) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if max := int64(p.end-p.start+1) * sector; int64(len(data)) > max {
		return fmt.Errorf("partition %s: %s is %d bytes, more than its %d", p.name, src, len(data), max)
	}
	// Zero blocks are skipped: the disk stays sparse (its free space
	// reads as zeros all the same).
	const block = 64 << 10
	zero := make([]byte, block)
	for off := 0; off < len(data); off += block {
		chunk := data[off:min(off+block, len(data))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		if _, err := f.WriteAt(chunk, int64(p.start*sector)+int64(off)); err != nil {
			return err
		}
	}
	return nil
}

// guidFrom makes a version 4 style GUID from a hash of seed, in GPT's
// byte order (the first three fields little-endian).
func guidFrom(seed string) [16]byte {
	h := sha256.Sum256([]byte(seed))
	var g [16]byte
	copy(g[:], h[:16])
	g[7] = g[7]&0x0f | 0x40 // version 4 (byte 7 holds the high byte of field 3, little-endian)
	g[8] = g[8]&0x3f | 0x80 // variant
	return g
}

func mustGUID(s string) [16]byte {
	var b [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		panic("bad GUID " + s)
	}
	// Fields 1-3 are stored little-endian, the rest as written.
	b[0], b[1], b[2], b[3] = raw[3], raw[2], raw[1], raw[0]
	b[4], b[5] = raw[5], raw[4]
	b[6], b[7] = raw[7], raw[6]
	copy(b[8:], raw[8:])
	return b
}
