package update

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/nocsig"
)

// simBox is one simulated box: the real update API and Updater over
// file-backed slots, on its own loopback listener.
type simBox struct {
	uai   string
	slots FileSlots
	srv   *httptest.Server
	why   string // why it fails, if it does
}

// startFleet starts n boxes trusting key; the boxes of failing get a
// slot too small for the image or one that refuses writes.
func startFleet(t *testing.T, n int, key nocsig.Key, running string, failing map[int]bool) []*simBox {
	t.Helper()
	boxes := make([]*simBox, n)
	for i := range n {
		dir := t.TempDir()
		b := &simBox{uai: fmt.Sprintf("09%05dA", i)}
		size := int64(1 << 20)
		var target Target
		switch {
		case failing[i] && i%2 == 0:
			b.why, size = string(ReasonTooLarge), 64<<10
		case failing[i]:
			b.why = string(ReasonWriteFailed)
		}
		s, err := CreateFileSlots(filepath.Join(dir, "slots"), size)
		if err != nil {
			t.Fatal(err)
		}
		b.slots, target = s, s
		if b.why == string(ReasonWriteFailed) {
			target = &slotOn{dev: "/dev/full", size: size}
		}
		u, err := New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, Options{Dir: filepath.Join(dir, "results"), Target: target})
		if err != nil {
			t.Fatal(err)
		}
		trust := Trust{Keys: nocsig.Keys{key.ID: key.Private.Public().(ed25519.PublicKey)}, Board: testBoard, UAI: b.uai, Running: running}
		api := &API{U: u, Trust: func() (Trust, error) { tr := trust; tr.Now = time.Now(); return tr, nil }}
		// The update served behind the management API, as on the box.
		b.srv = httptest.NewServer(&manage.API{Update: api})
		t.Cleanup(b.srv.Close)
		boxes[i] = b
	}
	return boxes
}

// TestUpdateFleetWaves: 200 simulated boxes, 10 % failing (a slot too
// small, a slot that refuses writes); the update rollout (5 % canary,
// then 25 %, everyone) stops when the failure rate passes 3 %, the boxes
// of later waves untouched; each outcome says why; pushing again to a box
// that runs the version counts as done.
func TestUpdateFleetWaves(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	key := newKey(t, "noc-1")
	const n = 200
	failing := map[int]bool{}
	rng := rand.New(rand.NewPCG(3, 3))
	for len(failing) < n/10 {
		failing[rng.IntN(n)] = true
	}
	// The canary holds none of them: the first wave passes.
	for i := range 10 {
		delete(failing, i)
	}
	boxes := startFleet(t, n, key, "1.4.0", failing)
	img := image(300<<10, 11)
	path := filepath.Join(t.TempDir(), "update.bundle")
	imgPath := filepath.Join(t.TempDir(), "slot.img")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteBundle(path, imgPath, Manifest{Board: testBoard, Version: "1.5.0", Expires: time.Now().Add(time.Hour)}, key); err != nil {
		t.Fatal(err)
	}
	targets := make([]manage.Target, n)
	for i, b := range boxes {
		targets[i] = manage.Target{UAI: b.uai, URL: b.srv.URL}
	}
	p := Pusher{Path: path}
	rep := manage.Rollout(context.Background(), targets, manage.RolloutOptions{Waves: []float64{0.05, 0.25, 1}, MaxFailure: 0.03,
		Parallel: 16, Push: p.Push, Failed: p.Failed, Client: &http.Client{Timeout: time.Minute}})
	t.Logf("waves %v, pushed %d, failed %d, stopped %v after wave %d, in %s; %v", rep.Waves, rep.Pushed, rep.Failed,
		rep.Stopped, rep.StoppedWave, rep.Took.Round(time.Millisecond), rep.Summary())
	if !rep.Stopped || rep.StoppedWave != 1 || rep.Pushed != 50 {
		t.Fatalf("the rollout did not stop after the second wave: %+v", rep.Summary())
	}
	for i, o := range rep.Outcomes {
		b := boxes[i]
		st, _ := b.slots.State()
		switch {
		case i >= 50:
			if o.Outcome != manage.OutcomeSkipped || st.Try != "" {
				t.Errorf("%s after the stop: %s, slots %+v", b.uai, o.Outcome, st)
			}
		case b.why == "":
			if o.Outcome != OutcomeInstalled || !strings.Contains(o.Detail, "version 1.5.0 in slot b") || st.Try != "b" {
				t.Errorf("%s: %s %s (%s), slots %+v", b.uai, o.Outcome, o.Reason, o.Detail, st)
			}
		default:
			if o.Reason != b.why || st.Try != "" {
				t.Errorf("%s: %s %s (%s), want %s; slots %+v", b.uai, o.Outcome, o.Reason, o.Detail, b.why, st)
			}
		}
	}
	// A box that already runs 1.5.0 (rebooted into it) counts as done.
	done := startFleet(t, 1, key, "1.5.0", nil)[0]
	o := p.Push(context.Background(), http.DefaultClient, manage.Target{UAI: done.uai, URL: done.srv.URL})
	if o.Reason != string(ReasonSameVersion) || p.Failed(o) {
		t.Errorf("a box already on the version: %+v", o)
	}
}

// TestUpdateAPIAnswersEarly: a refused update is answered from its
// manifest, while the pusher is still sending the image; the box reads
// no more of it than it must, and the pusher gets the reason, not a
// broken pipe.
func TestUpdateAPIAnswersEarly(t *testing.T) {
	key := newKey(t, "noc-1")
	boxes := startFleet(t, 1, key, "1.4.0", nil)
	img := image(32<<20, 12)
	dir := t.TempDir()
	imgPath, path := filepath.Join(dir, "slot.img"), filepath.Join(dir, "rpi4.bundle")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteBundle(path, imgPath, Manifest{Board: "rpi4", Version: "1.5.0", Expires: time.Now().Add(time.Hour)}, key); err != nil {
		t.Fatal(err)
	}
	o := Pusher{Path: path}.Push(context.Background(), http.DefaultClient, manage.Target{URL: boxes[0].srv.URL})
	if o.Outcome != OutcomeRejected || o.Reason != string(ReasonWrongBoard) {
		t.Errorf("got %+v", o)
	}
	resp, err := http.Get(boxes[0].srv.URL + "/v1/update")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := jsonDecode(resp, &st); err != nil || st.Running != "1.4.0" || st.Last == nil || st.Last.Reason != string(ReasonWrongBoard) {
		t.Errorf("status %+v, %v", st, err)
	}
	if !slices.Contains([]int{http.StatusOK}, resp.StatusCode) {
		t.Errorf("GET /v1/update: %s", resp.Status)
	}
}
