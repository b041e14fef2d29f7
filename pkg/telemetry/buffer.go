package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"passerelle/pkg/atomicfile"
)

// buffer is the queue of compressed pushes not yet accepted by the
// receiver, oldest first. Batches live in memory until a push fails; from
// then on every unsent batch is also a segment file in dir (one file per
// batch, written atomically: a power cut leaves a whole segment or none),
// so the backlog survives a reboot. The whole backlog, memory and disk,
// is capped at max bytes: beyond it the oldest batches are dropped and
// counted. A segment whose checksum fails is dropped and counted too.
//
// Segment file: "PRW1", CRC-32C of the payload (big endian), payload (a
// snappy-compressed WriteRequest). Names are the batch's sequence number,
// 16 hex digits, so the directory sorts oldest first.
type buffer struct {
	dir string // "" keeps everything in memory
	max int64

	mu      sync.Mutex
	q       []*segment
	bytes   int64
	next    uint64
	dropped func(reason string, n int)
}

type segment struct {
	seq    uint64
	size   int64
	data   []byte // nil once only on disk
	onDisk bool
}

const segMagic = "PRW1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openBuffer reads the segment index of dir (not the payloads), creating
// dir if needed. A dir that cannot be used leaves a memory-only buffer and
// the error.
func openBuffer(dir string, max int64, dropped func(string, int)) (*buffer, error) {
	b := &buffer{dir: dir, max: max, dropped: dropped}
	if dir == "" {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.dir = ""
		return b, fmt.Errorf("telemetry buffer: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.dir = ""
		return b, fmt.Errorf("telemetry buffer: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // a temporary file of a write cut short
			os.Remove(filepath.Join(dir, name))
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".rw"), 16, 64)
		if err != nil || !strings.HasSuffix(name, ".rw") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() <= int64(len(segMagic)+4) {
			os.Remove(filepath.Join(dir, name))
			b.drop("corrupt", 1)
			continue
		}
		b.q = append(b.q, &segment{seq: seq, size: info.Size() - 8, onDisk: true})
		b.bytes += info.Size() - 8
	}
	sort.Slice(b.q, func(i, j int) bool { return b.q[i].seq < b.q[j].seq })
	if n := len(b.q); n > 0 {
		b.next = b.q[n-1].seq + 1
	}
	b.trim()
	return b, nil
}

func (b *buffer) drop(reason string, n int) {
	if b.dropped != nil && n > 0 {
		b.dropped(reason, n)
	}
}

func (b *buffer) path(seq uint64) string {
	return filepath.Join(b.dir, fmt.Sprintf("%016x.rw", seq))
}

// add queues a batch (the buffer keeps data) and drops the oldest batches
// beyond the cap.
func (b *buffer) add(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.q = append(b.q, &segment{seq: b.next, size: int64(len(data)), data: data})
	b.next++
	b.bytes += int64(len(data))
	b.trim()
}

func (b *buffer) trim() {
	n := 0
	for b.bytes > b.max && len(b.q) > 1 {
		s := b.q[0]
		b.q = b.q[1:]
		b.bytes -= s.size
		if s.onDisk {
			os.Remove(b.path(s.seq))
		}
		n++
	}
	b.drop("full", n)
}

// spill writes every batch that is only in memory to its segment file and
// lets go of the memory. Batches that cannot be written stay in memory.
func (b *buffer) spill() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir == "" {
		return nil
	}
	var errs []error
	wrote := false
	for _, s := range b.q {
		if s.onDisk {
			continue
		}
		file := make([]byte, 8, 8+len(s.data))
		copy(file, segMagic)
		binary.BigEndian.PutUint32(file[4:], crc32.Checksum(s.data, castagnoli))
		file = append(file, s.data...)
		if err := atomicfile.Replace(b.path(s.seq), file, 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		s.onDisk, s.data, wrote = true, nil, true
	}
	if wrote {
		if err := atomicfile.SyncDir(b.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// head returns the oldest batch, reading it from disk if needed; a segment
// that fails its checksum is dropped (counted) and the next one tried.
func (b *buffer) head() (seq uint64, data []byte, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.q) > 0 {
		s := b.q[0]
		if s.data != nil {
			return s.seq, s.data, true
		}
		data, err := b.read(s.seq)
		if err == nil {
			return s.seq, data, true
		}
		b.q = b.q[1:]
		b.bytes -= s.size
		os.Remove(b.path(s.seq))
		b.drop("corrupt", 1)
	}
	return 0, nil, false
}

func (b *buffer) read(seq uint64) ([]byte, error) {
	file, err := os.ReadFile(b.path(seq))
	if err != nil {
		return nil, err
	}
	if len(file) < 8 || string(file[:4]) != segMagic {
		return nil, errors.New("not a segment")
	}
	data := file[8:]
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(file[4:8]) {
		return nil, errors.New("checksum mismatch")
	}
	return data, nil
}

// pop removes batch seq (sent, or refused for good) from the head.
func (b *buffer) pop(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) == 0 || b.q[0].seq != seq {
		return
	}
	s := b.q[0]
	b.q[0] = nil
	b.q = b.q[1:]
	b.bytes -= s.size
	if s.onDisk {
		os.Remove(b.path(s.seq))
	}
}

// stats returns the backlog: batches and compressed bytes.
func (b *buffer) stats() (int, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q), b.bytes
}
