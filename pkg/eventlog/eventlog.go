// Package eventlog keeps the daemon's events on /perm so that they
// survive a reboot (issue 17): what changed last is what a technician asks
// first, and the box's memory is lost at every power cut.
//
// The log is a ring of two files, current.jsonl and previous.jsonl, in one
// directory. Records are appended to the current file, one JSON object a
// line; when it passes half the size cap it becomes the previous file (one
// rename, atomic) and a new current file starts. So the log never holds
// more than the cap, and always at least the last half of it.
//
// Crash safety: each line is written with one write(2) on a file opened
// O_APPEND, and synced at most every SyncEvery (and at once for warnings
// and errors). A power cut can lose the last unsynced records or leave a
// torn last line; Open cuts a torn tail off and Read skips any line that
// is not whole JSON, so a damaged log still reads.
//
// Only records that carry an `event` attribute, and warnings and errors,
// are kept: the box's events, never the per-pupil data of the DNS query
// log (records of part=querylog are never kept).
package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	currentName  = "current.jsonl"
	previousName = "previous.jsonl"
	// DefaultDir is where the box keeps its log.
	DefaultDir = "/perm/log"
	// DefaultMaxBytes caps the two files together.
	DefaultMaxBytes = 1 << 20
	// DefaultSyncEvery bounds what a power cut loses of info records.
	DefaultSyncEvery = 5 * time.Second
	// maxLine bounds one record; longer ones are cut (and stay JSON).
	maxLine = 8 << 10
)

// Ring is the log's two files. Its methods are safe for concurrent use.
type Ring struct {
	dir       string
	max       int64
	syncEvery time.Duration
	now       func() time.Time

	mu       sync.Mutex
	f        *os.File
	size     int64
	lastSync time.Time
	dirty    bool
	err      error // the last write error, reported once by Err
}

// Options tune a Ring; zero values take the defaults.
type Options struct {
	MaxBytes  int64
	SyncEvery time.Duration
	Now       func() time.Time
}

// Open opens (creating it if needed) the log in dir, cutting a torn last
// line left by a crash.
func Open(dir string, o Options) (*Ring, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < 4*maxLine {
		o.MaxBytes = 4 * maxLine
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &Ring{dir: dir, max: o.MaxBytes, syncEvery: o.SyncEvery, now: o.Now}
	if err := r.openCurrent(); err != nil {
		return nil, err
	}
	return r, nil
}

// Dir returns the log's directory.
func (r *Ring) Dir() string { return r.dir }

func (r *Ring) openCurrent() error {
	p := filepath.Join(r.dir, currentName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	size, err := cutTornTail(f)
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, size
	return nil
}

// cutTornTail truncates the file after its last newline.
func cutTornTail(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	// Read back at most one line's worth to find the last newline.
	n := min(size, int64(maxLine+1))
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if buf[len(buf)-1] == '\n' {
		return size, nil
	}
	keep := size - n + int64(bytes.LastIndexByte(buf, '\n')+1)
	if bytes.LastIndexByte(buf, '\n') < 0 {
		keep = max(0, size-n)
	}
	if err := f.Truncate(keep); err != nil {
		return 0, err
	}
	return keep, f.Sync()
}

// Write appends one record (one JSON line; a missing final newline is
// added). It rotates the files when the current one passes half the cap.
func (r *Ring) Write(p []byte) (int, error) {
	return r.write(p, false)
}

func (r *Ring) write(p []byte, urgent bool) (int, error) {
	n := len(p)
	line := bytes.TrimRight(p, "\n")
	if len(line) > maxLine {
		// Keep it JSON: a cut record is replaced by a note saying so.
		line, _ = json.Marshal(map[string]any{"time": r.now().Format(time.RFC3339Nano), "level": "WARN", "msg": "record too long for the event log", "bytes": len(line)})
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errors.New("eventlog: closed")
	}
	if r.size+int64(len(buf)) > r.max/2 {
		if err := r.rotate(); err != nil {
			r.err = err
			return 0, err
		}
	}
	if _, err := r.f.Write(buf); err != nil {
		r.err = err
		return 0, err
	}
	r.size += int64(len(buf))
	r.dirty = true
	if now := r.now(); urgent || now.Sub(r.lastSync) >= r.syncEvery {
		r.lastSync = now
		r.dirty = false
		if err := r.f.Sync(); err != nil {
			r.err = err
		}
	}
	return n, nil
}

// rotate makes the current file the previous one. Called with r.mu held.
func (r *Ring) rotate() error {
	if err := r.f.Sync(); err != nil {
		return err
	}
	r.f.Close()
	r.f = nil
	if err := os.Rename(filepath.Join(r.dir, currentName), filepath.Join(r.dir, previousName)); err != nil {
		return err
	}
	if d, err := os.Open(r.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return r.openCurrent()
}

// Sync flushes what was written to the disk.
func (r *Ring) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil || !r.dirty {
		return nil
	}
	r.dirty = false
	r.lastSync = r.now()
	return r.f.Sync()
}

// Close syncs and closes the log.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Sync()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	return err
}

// Run syncs the log every SyncEvery until ctx ends, then closes it.
func (r *Ring) Run(ctx context.Context) {
	t := time.NewTicker(r.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Close()
			return
		case <-t.C:
			r.Sync()
		}
	}
}

// Record is one line of the log, decoded.
type Record map[string]any

// Time returns the record's time (zero if absent).
func (r Record) Time() time.Time {
	s, _ := r["time"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Str returns an attribute as text.
func (r Record) Str(key string) string {
	switch v := r[key].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Attrs returns the record's attributes but its time, level and message
// as "key=value" pairs joined by spaces (`passerelle log`, the status
// page's log), sorted by key: a record is a map, and the same record
// must read the same every time.
func (r Record) Attrs() string {
	var parts []string
	for k := range r {
		switch k {
		case "time", "level", "msg":
			continue
		}
		parts = append(parts, k+"="+r.Str(k))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// Read returns the records of the log in dir, oldest first, skipping
// damaged lines. A missing log reads as empty.
func Read(dir string) ([]Record, error) {
	var out []Record
	for _, name := range []string{previousName, currentName} {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4*maxLine)
		for sc.Scan() {
			var rec Record
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec != nil {
				out = append(out, rec)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// Handler tees the daemon's log records: every record goes to next, and
// the box's events (records with an `event` attribute, and warnings and
// errors) go to the ring as JSON too.
type Handler struct {
	next     slog.Handler
	ring     *Ring
	json     slog.Handler
	excluded bool // part=querylog: never kept
}

// NewHandler returns a handler writing to next and, for events, to ring.
func NewHandler(next slog.Handler, ring *Ring) *Handler {
	return &Handler{next: next, ring: ring, json: slog.NewJSONHandler(urgentWriter{ring}, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

// urgentWriter is the JSON handler's writer: one record, one Write.
// Warnings and errors are synced at once: they are what a technician
// looks for after a crash.
type urgentWriter struct{ r *Ring }

func (w urgentWriter) Write(p []byte) (int, error) {
	urgent := bytes.Contains(p, []byte(`"level":"WARN"`)) || bytes.Contains(p, []byte(`"level":"ERROR"`))
	return w.r.write(p, urgent)
}

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || (!h.excluded && l >= slog.LevelInfo)
}

func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if h.next.Enabled(ctx, rec.Level) {
		err = h.next.Handle(ctx, rec)
	}
	if h.excluded || rec.Level < slog.LevelInfo {
		return err
	}
	keep := rec.Level >= slog.LevelWarn
	if !keep {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "event" {
				keep = true
				return false
			}
			return true
		})
	}
	if keep {
		// The ring's error is the ring's: the daemon's log must go on.
		h.json.Handle(ctx, rec)
	}
	return err
}

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.json = h.json.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "part" && a.Value.String() == "querylog" {
			c.excluded = true
		}
	}
	return &c
}

func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.json = h.json.WithGroup(name)
	return &c
}
