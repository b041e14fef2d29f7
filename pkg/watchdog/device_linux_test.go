package watchdog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fifoReader collects what the daemon writes to a fake watchdog device.
type fifoReader struct {
	mu   sync.Mutex
	data bytes.Buffer
	eof  chan struct{}
}

func readFIFO(t *testing.T, path string) *fifoReader {
	r := &fifoReader{eof: make(chan struct{})}
	go func() {
		f, err := os.Open(path) // blocks until the writer opens
		if err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, 64)
		for {
			n, err := f.Read(buf)
			r.mu.Lock()
			r.data.Write(buf[:n])
			r.mu.Unlock()
			if err == io.EOF {
				close(r.eof)
				f.Close()
				return
			}
		}
	}()
	t.Cleanup(func() {
		// Unblock the reader if the test failed before opening.
		if f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	return r
}

func (r *fifoReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.data.String()
}

func (r *fifoReader) kicks() int { return bytes.Count([]byte(r.String()), []byte("k")) }

// TestFakeDeviceKicksStopWhenCriticalComponentHangs arms a FIFO as the
// watchdog device, kicks it from Run while a critical component beats,
// then lets the component hang: the kicks stop; it recovers: they resume;
// shutdown writes the magic 'V'.
func TestFakeDeviceKicksStopWhenCriticalComponentHangs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r := readFIFO(t, path)
	log := slog.New(slog.DiscardHandler)
	dev, err := Open(log, path, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := New(log, dev, nil, 10*time.Millisecond)
	heart := w.Heart("dhcp", 100*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	hang := make(chan struct{})
	resume := make(chan struct{})
	go func() { // the critical component's main loop
		for {
			select {
			case <-ctx.Done():
				return
			case <-hang:
				<-resume // hung: no beats
				hang = nil
			case <-time.After(20 * time.Millisecond):
				heart.Beat()
			}
		}
	}()

	waitKicks := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for r.kicks() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d kicks, want %d", r.kicks(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitKicks(5)
	close(hang)
	// Once the heart is silent past its limit, kicks stop for good.
	time.Sleep(200 * time.Millisecond)
	stalled := r.kicks()
	time.Sleep(300 * time.Millisecond)
	if now := r.kicks(); now != stalled {
		t.Fatalf("kicks went on while the component hung: %d then %d", stalled, now)
	}
	close(resume)
	waitKicks(stalled + 3)

	cancel()
	if err := w.Disarm(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.eof:
	case <-time.After(5 * time.Second):
		t.Fatal("device not closed after Disarm")
	}
	if s := r.String(); s[len(s)-1] != 'V' {
		t.Errorf("last byte written %q, want the magic close 'V'", s[len(s)-1])
	}
}
