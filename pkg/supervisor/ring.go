package supervisor

import (
	"bytes"
	"sync"
)

// Ring keeps the last Size bytes written to it: a service's recent output
// for the status page, in bounded memory however chatty the child is.
type Ring struct {
	mu    sync.Mutex
	buf   []byte
	start int // index of the oldest byte once full
	full  bool
	total int64
}

// NewRing returns a ring holding at most size bytes (at least 1).
func NewRing(size int) *Ring {
	return &Ring{buf: make([]byte, 0, max(size, 1))}
}

// Write keeps the tail of p. It never fails.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	r.total += int64(n)
	size := cap(r.buf)
	if len(p) >= size {
		r.buf = append(r.buf[:0], p[len(p)-size:]...)
		r.start, r.full = 0, true
		return n, nil
	}
	if !r.full {
		room := size - len(r.buf)
		if len(p) <= room {
			r.buf = append(r.buf, p...)
			return n, nil
		}
		r.buf = append(r.buf, p[:room]...)
		p = p[room:]
		r.full = true
		r.start = 0
	}
	for len(p) > 0 {
		c := copy(r.buf[r.start:], p)
		p = p[c:]
		r.start = (r.start + c) % size
	}
	return n, nil
}

// Bytes returns a copy of the kept output, oldest first. Once the ring has
// wrapped, the partial first line is dropped so the text starts cleanly.
func (r *Ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	out = append(out, r.buf[:r.start]...)
	if r.full {
		if i := bytes.IndexByte(out, '\n'); i >= 0 && i < len(out)-1 {
			out = out[i+1:]
		}
	}
	return out
}

// Total is how many bytes were ever written, kept or not.
func (r *Ring) Total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
