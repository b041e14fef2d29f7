package update

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Target is the box's A/B slots, as the update sees them. The A/B slots
// package implements it per board (GRUB's environment on EFI and qemu).
//
// Inactive names the slot that is not running, its block device (or, in
// tests and the lab, a regular file of the slot's size) and its size in
// bytes. The update writes that device only: never the running slot.
//
// TryOnce marks the slot to be booted once at the next boot; if that
// boot does not confirm it, the board returns to the running slot. It is
// called only after the image was written, synced, read back and found
// to match the signed hash twice.
type Target interface {
	Inactive() (slot string, device string, size int64, err error)
	TryOnce(slot string) error
}

// Discarder is implemented by a Target that can cancel an earlier
// TryOnce of a slot. Install calls it before it writes the slot, so a slot
// marked by an earlier update is never tried while it is being
// overwritten (its head is zeroed first in any case, below).
type Discarder interface {
	Discard(slot string) error
}

// HeadSize is the part of the slot written last: zeroed before anything
// else, kept in memory while the rest streams in, and written only once
// the whole image matched its hash. Until then the slot starts with
// zeros, so no bootloader finds a file system there (ext4's superblock is
// at 1 KiB, squashfs and FAT at 0). A slot left half written by a broken
// stream, an error or a power cut is therefore unusable, never half new.
const HeadSize = 1 << 20

// chunk is the size of the writes and read-back reads.
const chunk = 1 << 20

// Installed is a successful install.
type Installed struct {
	Manifest *Manifest
	KeyID    string // the key that signed it
	Slot     string
	Device   string
	Took     time.Duration
}

// Install reads an update bundle from r, checks its manifest against t
// (nothing is written if it fails), streams the image into target's
// inactive slot while hashing it, syncs, reads it back and hashes it
// again, and only when both hashes match the manifest's calls TryOnce.
// The error is an *Error: Written false when the update was refused,
// true when the slot was being written (it is then left unusable, and
// TryOnce is not called).
func Install(ctx context.Context, r io.Reader, t Trust, target Target) (*Installed, error) {
	start := time.Now()
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	m, signer, err := ReadManifest(br, t)
	if err != nil {
		return nil, err
	}
	header := cr.n - int64(br.Buffered())
	if target == nil {
		return nil, reject(ReasonNoSlot, "this box has no A/B slots to install into")
	}
	slot, dev, size, err := target.Inactive()
	if err != nil {
		return nil, reject(ReasonNoSlot, "no inactive slot: %v", err)
	}
	if m.Image.Size > size {
		return nil, reject(ReasonTooLarge, "the image is %d bytes; slot %s holds %d", m.Image.Size, slot, size)
	}
	if d, ok := r.(declared); ok && d.size >= 0 {
		switch want := header + m.Image.Size; {
		case d.size > want:
			return nil, reject(ReasonTooLarge, "the request's body is %d bytes, more than the %d of the header and the image the manifest signs", d.size, want)
		case d.size < want:
			return nil, reject(ReasonMalformed, "the request's body is %d bytes, less than the %d of the header and the image the manifest signs", d.size, want)
		}
	}
	// Never O_CREATE or O_TRUNC: the slot exists and keeps its size.
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, reject(ReasonNoSlot, "slot %s: %v", slot, err)
	}
	defer f.Close()
	if d, ok := target.(Discarder); ok {
		if err := d.Discard(slot); err != nil {
			return nil, reject(ReasonNoSlot, "slot %s: cannot cancel an earlier try: %v", slot, err)
		}
	}
	w := &slotWriter{f: f, slot: slot, clear: min(int64(HeadSize), size)}
	if err := w.install(ctx, br, m); err != nil {
		// Whatever happened, the head is zeros again: the slot is
		// unusable until the next update writes it whole.
		if zerr := w.zeroHead(); zerr != nil {
			err.Detail += fmt.Sprintf(" (and the slot's head could not be cleared: %v)", zerr)
		}
		return nil, err
	}
	if err := target.TryOnce(slot); err != nil {
		if zerr := w.zeroHead(); zerr != nil {
			return nil, failed(ReasonTryFailed, "slot %s: %v (and its head could not be cleared: %v)", slot, err, zerr)
		}
		return nil, failed(ReasonTryFailed, "slot %s: %v", slot, err)
	}
	return &Installed{Manifest: m, KeyID: signer, Slot: slot, Device: dev, Took: time.Since(start)}, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// slotWriter writes one image into one slot.
type slotWriter struct {
	f     *os.File
	slot  string
	clear int64 // bytes zeroed at the start of the slot: HeadSize, or the slot's size if smaller
}

func (w *slotWriter) install(ctx context.Context, r io.Reader, m *Manifest) *Error {
	size := m.Image.Size
	headLen := min(int64(HeadSize), size)
	if err := w.zeroHead(); err != nil {
		return failed(ReasonWriteFailed, "slot %s: clearing its head: %v", w.slot, err)
	}
	h := sha256.New()
	head := make([]byte, headLen)
	if n, err := io.ReadFull(r, head); err != nil {
		return failed(ReasonTruncated, "the image stopped after %d of %d bytes: %v", n, size, readErr(err))
	}
	h.Write(head)
	buf := make([]byte, chunk)
	for off := headLen; off < size; {
		if err := ctx.Err(); err != nil {
			return failed(ReasonTruncated, "the image stopped after %d of %d bytes: %v", off, size, err)
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := w.f.WriteAt(buf[:n], off); werr != nil {
				return failed(ReasonWriteFailed, "slot %s at byte %d: %v", w.slot, off, werr)
			}
			off += int64(n)
		}
		if err != nil {
			return failed(ReasonTruncated, "the image stopped after %d of %d bytes: %v", off, size, readErr(err))
		}
	}
	// Cancelled once the last bytes arrived: still not installed.
	if err := ctx.Err(); err != nil {
		return failed(ReasonTruncated, "the install was stopped after the %d bytes of the image: %v", size, err)
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return failed(ReasonMalformed, "more bytes follow the %d of the image the manifest signs", size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.Image.SHA256 {
		return failed(ReasonHashMismatch, "the image received has SHA-256 %s; the manifest signs %s", got, m.Image.SHA256)
	}
	if err := w.f.Sync(); err != nil {
		return failed(ReasonWriteFailed, "slot %s: sync: %v", w.slot, err)
	}
	if _, err := w.f.WriteAt(head, 0); err != nil {
		return failed(ReasonWriteFailed, "slot %s: writing its head: %v", w.slot, err)
	}
	if err := w.f.Sync(); err != nil {
		return failed(ReasonWriteFailed, "slot %s: sync: %v", w.slot, err)
	}
	// Read back from the device, not from the page cache: drop the
	// slot's cached pages first (they are clean after the sync).
	dropCache(w.f, size)
	h.Reset()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(w.f, 0, size), buf); err != nil {
		return failed(ReasonWriteFailed, "slot %s: reading it back: %v", w.slot, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.Image.SHA256 {
		return failed(ReasonReadbackMismatch, "slot %s read back has SHA-256 %s; %s was written", w.slot, got, m.Image.SHA256)
	}
	return nil
}

// zeroHead overwrites the first HeadSize bytes of the slot with zeros
// and syncs.
func (w *slotWriter) zeroHead() error {
	if _, err := w.f.WriteAt(make([]byte, w.clear), 0); err != nil {
		return err
	}
	return w.f.Sync()
}

// readErr says that a stream ended early in words.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("the stream ended")
	}
	return err
}
