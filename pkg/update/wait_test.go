package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/nocsig"
)

// restartingBox is a box whose restart is simulated: the real Updater
// and API over file-backed slots; Reboot starts a new boot that runs the
// tried slot's version when the image is good, or comes back on the old
// slot with the trial abandoned.
type restartingBox struct {
	mu      sync.Mutex
	boot    int
	running string
	slots   SlotState
	good    bool
	fs      FileSlots
	srv     *httptest.Server
}

func startRestartingBox(t *testing.T, key nocsig.Key, good bool) *restartingBox {
	t.Helper()
	dir := t.TempDir()
	s, err := CreateFileSlots(filepath.Join(dir, "slots"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b := &restartingBox{boot: 1, running: "1.4.0", slots: SlotState{Booted: "a"}, good: good, fs: s}
	u, err := New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)},
		Options{Dir: filepath.Join(dir, "results"), Target: s, Reboot: b.reboot})
	if err != nil {
		t.Fatal(err)
	}
	api := &API{U: u,
		Trust: func() (Trust, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			return Trust{Keys: nocsig.Keys{key.ID: key.Private.Public().(ed25519.PublicKey)}, Board: testBoard, UAI: testUAI,
				Running: b.running, Now: time.Now()}, nil
		},
		Boot: func() string { b.mu.Lock(); defer b.mu.Unlock(); return fmt.Sprint(b.boot) },
		Slots: func() *SlotState {
			b.mu.Lock()
			defer b.mu.Unlock()
			st := b.slots
			return &st
		}}
	b.srv = httptest.NewServer(api)
	t.Cleanup(b.srv.Close)
	return b
}

// reboot: the box is away for a moment, then boots the tried slot; the
// health gate decides a moment later.
func (b *restartingBox) reboot() error {
	b.mu.Lock()
	b.boot++
	b.slots = SlotState{Booted: "b", Trying: true}
	b.mu.Unlock()
	time.AfterFunc(200*time.Millisecond, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.good {
			b.running, b.slots = "1.5.0", SlotState{Booted: "b", LastSlot: "b", LastVersion: "1.5.0", LastOutcome: "committed"}
			return
		}
		// The new slot's daemon exited at once: the board went back.
		b.boot++
		b.slots = SlotState{Booted: "a", LastSlot: "b", LastVersion: "1.5.0", LastOutcome: "abandoned",
			LastDetail: "it restarted before its health gate passed (crash or hang)"}
	})
	return nil
}

// TestUpdatePushWaitsForTheVerdict: with --reboot and a wait, the pusher
// follows each box through its restart: a good image ends committed, one
// whose slot the box abandons ends reverted with the box's reason, and
// counts against the rollout, which stops after the canary.
func TestUpdatePushWaitsForTheVerdict(t *testing.T) {
	key := newKey(t, "noc-1")
	img := image(200<<10, 21)
	dir := t.TempDir()
	imgPath, path := filepath.Join(dir, "slot.img"), filepath.Join(dir, "u.bundle")
	os.WriteFile(imgPath, img, 0o644)
	if _, err := WriteBundle(path, imgPath, Manifest{Board: testBoard, Version: "1.5.0", Expires: time.Now().Add(time.Hour)}, key); err != nil {
		t.Fatal(err)
	}
	p := Pusher{Path: path, Reboot: true, Wait: 20 * time.Second, Every: 50 * time.Millisecond}
	good, bad := startRestartingBox(t, key, true), startRestartingBox(t, key, false)
	o := p.Push(context.Background(), http.DefaultClient, manage.Target{UAI: "good", URL: good.srv.URL})
	if o.Outcome != OutcomeCommitted || p.Failed(o) {
		t.Errorf("good image: %+v", o)
	}
	o = p.Push(context.Background(), http.DefaultClient, manage.Target{UAI: "bad", URL: bad.srv.URL})
	if o.Outcome != OutcomeReverted || o.Reason != "abandoned" || !strings.Contains(o.Detail, "restarted before its health gate passed") || !p.Failed(o) {
		t.Errorf("bad image: %+v", o)
	}
	// In waves: a canary that does not come back committed stops it.
	canary, rest := startRestartingBox(t, key, false), startRestartingBox(t, key, true)
	rep := manage.Rollout(context.Background(), []manage.Target{{UAI: "canary", URL: canary.srv.URL}, {UAI: "rest", URL: rest.srv.URL}},
		manage.RolloutOptions{Waves: []float64{0.5, 1}, MaxFailure: 0.05, Push: p.Push, Failed: p.Failed})
	if !rep.Stopped || rep.Outcomes[0].Outcome != OutcomeReverted || rep.Outcomes[1].Outcome != manage.OutcomeSkipped {
		t.Errorf("rollout: %+v", rep)
	}
	// A box that does not say which boot it runs cannot be followed.
	plain := startFleet(t, 1, key, "1.4.0", nil)[0]
	if o := p.Push(context.Background(), http.DefaultClient, manage.Target{URL: plain.srv.URL}); o.Outcome != manage.OutcomeUnreachable || !strings.Contains(o.Detail, "which boot") {
		t.Errorf("box without a boot id: %+v", o)
	}
	if st, _ := plain.slots.State(); st.Try != "" {
		t.Error("an update was pushed to a box that cannot be followed")
	}
}

// TestUpdateSlowPusherIsCut: a pusher that stops sending mid-image, or
// sends it slower than the minimum rate, ends the install (truncated,
// by a timeout); the slot is not tried, and the next update is not
// refused as busy.
func TestUpdateSlowPusherIsCut(t *testing.T) {
	tests := []struct {
		name string
		pace manage.Pace
		send func(w io.Writer, data []byte) // the second half of the bundle
	}{
		{"stalls", manage.Pace{Stall: 300 * time.Millisecond}, func(io.Writer, []byte) {}},
		{"crawls", manage.Pace{Grace: 300 * time.Millisecond, MinRate: 1 << 20, Stall: time.Minute}, func(w io.Writer, data []byte) {
			for i := 0; i < len(data); i += 256 { // 25 KiB/s
				if _, err := w.Write(data[i:min(i+256, len(data))]); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t, "noc-1")
			dir := t.TempDir()
			s, err := CreateFileSlots(filepath.Join(dir, "slots"), 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			u, err := New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, Options{Dir: filepath.Join(dir, "results"), Target: s})
			if err != nil {
				t.Fatal(err)
			}
			trust := trustOf(key)
			srv := httptest.NewServer(&API{U: u, Pace: tt.pace, Trust: func() (Trust, error) { return trust, nil }})
			defer srv.Close()
			img := image(2<<20, 22)
			data := bundle(t, manifestFor(img), img, key)
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/update", pr)
			req.ContentLength = int64(len(data))
			go func() {
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			pw.Write(data[:len(data)/2])
			go tt.send(pw, data[len(data)/2:])
			waitFor := time.Now().Add(30 * time.Second)
			for {
				if last, ok := u.Last(); ok {
					if last.Outcome != OutcomeFailed || last.Reason != string(ReasonTruncated) || !strings.Contains(last.Detail, "timeout") {
						t.Fatalf("slow update: %+v", last)
					}
					break
				}
				if time.Now().After(waitFor) {
					t.Fatal("a slow update is still being installed after 30 s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			pw.CloseWithError(errors.New("test over"))
			if st, _ := s.State(); st.Try != "" {
				t.Errorf("slot %s to be tried after a slow stream", st.Try)
			}
			res := u.Handle(context.Background(), bytes.NewReader(data), trust, "push", false)
			if res.Outcome != OutcomeInstalled {
				t.Errorf("the next update: %+v", res)
			}
		})
	}
}
