package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"unicode/utf16"
)

// A GPT disk with one partition, written without root or loop devices.
// go-diskfs can do this too, but it would bring five modules into go.mod
// for what is two headers, two entry tables and a protective MBR
// (UEFI 2.10, section 5); `sfdisk --json` checks the result in the test.

const (
	sector     = 512
	numEntries = 128
	entrySize  = 128
	// entrySectors: 128 entries of 128 bytes.
	entrySectors = numEntries * entrySize / sector
	// firstLBA aligns the partition on 1 MiB, as partitioning tools do.
	firstLBA = 2048
)

// linuxFS is the partition type GUID of a Linux filesystem.
var linuxFS = mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")

// partition is one GPT partition.
type partition struct {
	name       string
	start, end uint64 // LBAs, inclusive
	typ, guid  [16]byte
}

// writeGPTDisk creates path, size bytes (sparse), with one partition
// named name over the rest of the disk after 1 MiB. Its GUIDs derive
// from seed: same inputs, same bytes.
func writeGPTDisk(path string, size int64, name, seed string) (partition, error) {
	if size%sector != 0 || size < 4<<20 {
		return partition{}, fmt.Errorf("disk size %d: want a multiple of %d of at least 4 MiB", size, sector)
	}
	n := uint64(size / sector)
	lastUsable := n - 1 - entrySectors - 1
	// End the partition on a 1 MiB boundary too (2048 sectors).
	end := (lastUsable+1)/2048*2048 - 1
	p := partition{name: name, start: firstLBA, end: end, typ: linuxFS, guid: guidFrom(seed + "/" + name)}

	entries := make([]byte, numEntries*entrySize)
	copy(entries[0:], p.typ[:])
	copy(entries[16:], p.guid[:])
	binary.LittleEndian.PutUint64(entries[32:], p.start)
	binary.LittleEndian.PutUint64(entries[40:], p.end)
	for i, c := range utf16.Encode([]rune(name)) {
		if i >= 36 {
			return p, fmt.Errorf("partition name %q longer than 36 characters", name)
		}
		binary.LittleEndian.PutUint16(entries[56+2*i:], c)
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
		return p, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return p, err
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
			return p, err
		}
	}
	return p, f.Close()
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
