package update

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/nocsig"
)

const (
	testBoard = "qemu-arm64"
	testUAI   = "0599999Y"
	slotSize  = 4 << 20
)

func newKey(t testing.TB, id string) nocsig.Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return nocsig.Key{ID: id, Private: priv}
}

func trustOf(keys ...nocsig.Key) Trust {
	t := Trust{Keys: nocsig.Keys{}, Board: testBoard, UAI: testUAI, Running: "1.4.0", Now: time.Now()}
	for _, k := range keys {
		t.Keys[k.ID] = k.Private.Public().(ed25519.PublicKey)
	}
	return t
}

// image is n deterministic pseudo-random bytes (a slot image).
func image(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func manifestFor(img []byte) Manifest {
	sum := sha256.Sum256(img)
	return Manifest{Board: testBoard, Version: "1.5.0", Image: Image{Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:])},
		SignedAt: time.Now(), Expires: time.Now().Add(time.Hour)}
}

// bundle is header + image.
func bundle(t testing.TB, m Manifest, img []byte, keys ...nocsig.Key) []byte {
	t.Helper()
	h, err := Header(m, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return append(h, img...)
}

// rawBundle signs any manifest bytes under any context (the cases Header
// refuses to make).
func rawBundle(payload []byte, context string, img []byte, keys ...nocsig.Key) []byte {
	env, _ := json.Marshal(nocsig.Seal(context, payload, keys...))
	return append([]byte(magic+strconv.Itoa(len(env))+"\n"+string(env)), img...)
}

// rig is one box: file-backed slots (a running, b inactive, both filled
// with a pattern so any write shows) and an Updater.
type rig struct {
	slots FileSlots
	u     *Updater
	reg   *prometheus.Registry
	a, b  []byte // the slots' contents before the test
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	s, err := CreateFileSlots(filepath.Join(dir, "slots"), slotSize)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{slots: s, reg: prometheus.NewRegistry(), a: image(slotSize, 1), b: image(slotSize, 2)}
	if err := os.WriteFile(s.device("a"), r.a, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.device("b"), r.b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.u, err = New(box.Deps{Metrics: r.reg, Health: health.New(time.Now)}, Options{Dir: filepath.Join(dir, "results"), Target: s})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) slot(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(r.slots.device(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) state(t *testing.T) FileSlotState {
	t.Helper()
	st, err := r.slots.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUpdateInstall: a good bundle lands in the inactive slot (b) whole,
// b is to be tried once, the running slot (a) is untouched, and the
// result is kept, counted and says so.
func TestUpdateInstall(t *testing.T) {
	r := newRig(t)
	key := newKey(t, "noc-1")
	img := image(3<<20+12345, 3) // more than HeadSize, not a multiple of the chunk
	res := r.u.Handle(context.Background(), bytes.NewReader(bundle(t, manifestFor(img), img, key)), trustOf(key), "push", false)
	if res.Outcome != OutcomeInstalled || res.Slot != "b" || res.Version != "1.5.0" || res.KeyID != "noc-1" {
		t.Fatalf("result %+v", res)
	}
	if got := r.slot(t, "b"); !bytes.Equal(got[:len(img)], img) || !bytes.Equal(got[len(img):], r.b[len(img):]) {
		t.Error("slot b does not hold the image (and, after it, what it held)")
	}
	if !bytes.Equal(r.slot(t, "a"), r.a) {
		t.Error("the running slot a was written")
	}
	if st := r.state(t); st.Running != "a" || st.Try != "b" {
		t.Errorf("slots %+v, want b to be tried", st)
	}
	if last, ok := r.u.Last(); !ok || last.Outcome != OutcomeInstalled || !strings.Contains(last.Summary(), "slot b") {
		t.Errorf("kept result %+v", last)
	}
	if v := testutil.ToFloat64(r.u.met.updates.WithLabelValues(OutcomeInstalled, "")); v != 1 {
		t.Errorf("installed counted %v times", v)
	}
}

// TestUpdateRejections: every reason an update is refused or fails, each
// with its message; a refused one writes nothing to the slot, a failed
// one leaves the slot's head zeroed (unusable); neither is ever tried.
func TestUpdateRejections(t *testing.T) {
	key, stranger := newKey(t, "noc-1"), newKey(t, "intruder")
	other := nocsig.Key{ID: "noc-1", Private: newKey(t, "x").Private} // another key under the trusted name
	img := image(2<<20+777, 4)
	good := manifestFor(img)
	with := func(f func(*Manifest)) Manifest { m := good; f(&m); return m }
	payload := func(m Manifest) []byte { m.Format, m.KeyID = Format, key.ID; b, _ := json.Marshal(m); return b }
	tampered := func() []byte {
		// Signed for 1.5.0, then the version is changed in the envelope.
		h, _ := Header(good, key)
		_, env, _ := bytes.Cut(h, []byte("\n"))
		var e nocsig.Envelope
		json.Unmarshal(env, &e)
		raw, _ := base64.StdEncoding.DecodeString(e.Payload)
		e.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(raw, []byte(`"1.5.0"`), []byte(`"9.9.9"`), 1))
		env, _ = json.Marshal(e)
		return append([]byte(magic+strconv.Itoa(len(env))+"\n"+string(env)), img...)
	}
	configBundle, _ := manage.Sign(manage.Payload{UAI: testUAI, Version: 7, Expires: time.Now().Add(time.Hour), Config: "version: 1"}, key)
	flip := bytes.Clone(img)
	flip[len(flip)-1] ^= 1
	cases := []struct {
		name    string
		data    []byte
		trust   func(*Trust)
		reason  Reason
		detail  string
		written bool
	}{
		{"empty", nil, nil, ReasonMalformed, "empty", false},
		{"not an update (a config bundle)", configBundle, nil, ReasonMalformed, "not an update bundle", false},
		{"manifest too large", []byte(magic + "9999999\n{}"), nil, ReasonMalformed, "more than", false},
		{"manifest cut short", []byte(magic + "500\n{\"payload\":"), nil, ReasonMalformed, "cut short", false},
		{"manifest not json", []byte(magic + "5\nhello"), nil, ReasonMalformed, "not a signed envelope", false},
		{"no line end", []byte(magic + "12"), nil, ReasonMalformed, "no line end", false},
		{"unknown manifest field", rawBundle([]byte(`{"format":1,"surprise":1}`), nocsig.ContextUpdate, img, key), nil, ReasonMalformed, "surprise", false},
		{"bad image hash field", rawBundle(payload(with(func(m *Manifest) { m.Image.SHA256 = "abc" })), nocsig.ContextUpdate, img, key), nil, ReasonMalformed, "64 hex digits", false},
		{"version not semantic", rawBundle(payload(with(func(m *Manifest) { m.Version = "20127dd" })), nocsig.ContextUpdate, img, key), nil, ReasonMalformed, "MAJOR.MINOR.PATCH", false},
		{"not signed", bundle(t, good, img), nil, ReasonNotSigned, "no signature", false},
		{"unknown key", bundle(t, good, img, stranger), nil, ReasonUnknownKey, "intruder", false},
		{"bad signature (other key, same name)", bundle(t, good, img, other), nil, ReasonBadSignature, "noc-1", false},
		{"bad signature (tampered manifest)", tampered(), nil, ReasonBadSignature, "does not match", false},
		{"bad signature (signed as a configuration bundle)", rawBundle(payload(good), nocsig.ContextBundle, img, key), nil, ReasonBadSignature, "does not match", false},
		{"wrong board", bundle(t, with(func(m *Manifest) { m.Board = "rpi4" }), img, key), nil, ReasonWrongBoard, "for board rpi4; this box is qemu-arm64", false},
		{"other boxes", bundle(t, with(func(m *Manifest) { m.UAIs = []string{"0591234A"} }), img, key), nil, ReasonWrongUAI, "not 0599999Y", false},
		{"listed box passes, then expired", bundle(t, with(func(m *Manifest) { m.UAIs = []string{testUAI}; m.Expires = time.Now().Add(-time.Minute) }), img, key), nil, ReasonExpired, "expired at", false},
		{"same version", bundle(t, with(func(m *Manifest) { m.Version = "v1.4.0+abc" }), img, key), nil, ReasonSameVersion, "is the one running", false},
		{"older version", bundle(t, with(func(m *Manifest) { m.Version = "1.4.0-rc.2" }), img, key), nil, ReasonNotNewer, "older than 1.4.0", false},
		{"older version (numbers, not text)", bundle(t, with(func(m *Manifest) { m.Version = "1.10.0" }), img, key), func(tr *Trust) { tr.Running = "1.11.0" }, ReasonNotNewer, "older than 1.11.0", false},
		{"too large for the slot", bundle(t, with(func(m *Manifest) { m.Image.Size = slotSize + 1 }), img, key), nil, ReasonTooLarge, "holds 4194304", false},
		{"truncated stream", bundle(t, good, img, key)[:len(bundle(t, good, img, key))-1000], nil, ReasonTruncated, "stream ended", true},
		{"truncated in the head", bundle(t, good, img, key)[:len(bundle(t, good, img, key))-len(img)+100], nil, ReasonTruncated, "after 100 of", true},
		{"wrong image", bundle(t, good, flip, key), nil, ReasonHashMismatch, "the manifest signs " + good.Image.SHA256, true},
		{"bytes after the image", append(bundle(t, good, img, key), 0), nil, ReasonMalformed, "more bytes follow", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			tr := trustOf(key)
			if c.trust != nil {
				c.trust(&tr)
			}
			res := r.u.Handle(context.Background(), bytes.NewReader(c.data), tr, "push", true)
			wantOutcome := OutcomeRejected
			if c.written {
				wantOutcome = OutcomeFailed
			}
			if res.Outcome != wantOutcome || res.Reason != string(c.reason) {
				t.Fatalf("got %s/%s (%s), want %s/%s", res.Outcome, res.Reason, res.Detail, wantOutcome, c.reason)
			}
			if !strings.Contains(res.Detail, c.detail) {
				t.Errorf("detail %q does not say %q", res.Detail, c.detail)
			}
			if res.Reboot != "" {
				t.Errorf("reboot %q after a refusal", res.Reboot)
			}
			b := r.slot(t, "b")
			switch {
			case !c.written && !bytes.Equal(b, r.b):
				t.Error("a refused update wrote to the slot")
			case c.written && !bytes.Equal(b[:HeadSize], make([]byte, HeadSize)):
				t.Error("a failed update left the slot's head as it was (it must be unusable)")
			}
			if !bytes.Equal(r.slot(t, "a"), r.a) {
				t.Error("the running slot was written")
			}
			if st := r.state(t); st.Try != "" {
				t.Errorf("slot %s is to be tried after a refusal", st.Try)
			}
			if last, ok := r.u.Last(); !ok || last.Reason != string(c.reason) || last.Outcome != wantOutcome {
				t.Errorf("kept result %+v", last)
			}
			if v := testutil.ToFloat64(r.u.met.updates.WithLabelValues(wantOutcome, string(c.reason))); v != 1 {
				t.Errorf("counted %v times", v)
			}
		})
	}
}

// TestUpdateInterruptedStreamNeverTries: a stream that breaks (the pusher
// gone, the context cancelled) after the slot was partly written leaves
// it unusable and untried, and an earlier pending try of that slot is
// cancelled before the first write.
func TestUpdateInterruptedStreamNeverTries(t *testing.T) {
	key := newKey(t, "noc-1")
	img := image(3<<20, 5)
	full := bundle(t, manifestFor(img), img, key)
	for _, c := range []struct {
		name   string
		cut    int // bytes of the image sent before the break
		cancel bool
	}{
		{"pusher gone in the head", 4096, false},
		{"pusher gone after the head", 2 << 20, false},
		{"cancelled", 2 << 20, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			if err := r.slots.TryOnce("b"); err != nil { // an earlier update's pending try
				t.Fatal(err)
			}
			pr, pw := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan Result, 1)
			go func() { done <- r.u.Handle(ctx, pr, trustOf(key), "push", false) }()
			n := len(full) - len(img) + c.cut
			if _, err := pw.Write(full[:n]); err != nil {
				t.Fatal(err)
			}
			if c.cancel {
				cancel()
				go pw.Write(full[n:]) // the rest arrives, too late; nothing more after it
			} else {
				pw.CloseWithError(errors.New("connection reset by peer"))
			}
			res := <-done
			pw.Close()
			if res.Outcome != OutcomeFailed || res.Reason != string(ReasonTruncated) {
				t.Fatalf("got %+v", res)
			}
			if st := r.state(t); st.Try != "" {
				t.Errorf("slot %s is to be tried after a broken stream", st.Try)
			}
			if b := r.slot(t, "b"); !bytes.Equal(b[:HeadSize], make([]byte, HeadSize)) {
				t.Error("the slot's head is not zeroed")
			}
			if !bytes.Equal(r.slot(t, "a"), r.a) {
				t.Error("the running slot was written")
			}
		})
	}
}

// slotOn is a Target over one device or file, whose TryOnce can fail:
// the failures no file-backed slot shows (a device that refuses writes,
// a bootloader environment that cannot be written).
type slotOn struct {
	dev    string
	size   int64
	tryErr error
	mu     sync.Mutex
	tried  []string
}

func (s *slotOn) Inactive() (string, string, int64, error) { return "b", s.dev, s.size, nil }

func (s *slotOn) TryOnce(slot string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tried = append(s.tried, slot)
	return s.tryErr
}

// TestUpdateDeviceFailures: a device that refuses writes (/dev/full), a
// missing slot, no slots at all, and a TryOnce that fails.
func TestUpdateDeviceFailures(t *testing.T) {
	key := newKey(t, "noc-1")
	img := image(1<<20+5, 6)
	data := bundle(t, manifestFor(img), img, key)
	file := filepath.Join(t.TempDir(), "b.img")
	if err := os.WriteFile(file, image(slotSize, 9), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		target Target
		reason Reason
		detail string
	}{
		{"no slots", nil, ReasonNoSlot, "no A/B slots"},
		{"slot missing", &slotOn{dev: filepath.Join(t.TempDir(), "gone"), size: slotSize}, ReasonNoSlot, "no such file"},
		{"device refuses writes", &slotOn{dev: "/dev/full", size: slotSize}, ReasonWriteFailed, "no space left"},
		{"try fails", &slotOn{dev: file, size: slotSize, tryErr: errors.New("grubenv: read-only file system")}, ReasonTryFailed, "read-only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.target != nil && c.target.(*slotOn).dev == "/dev/full" {
				if _, err := os.Stat("/dev/full"); err != nil {
					t.Skip("no /dev/full")
				}
			}
			_, err := Install(context.Background(), bytes.NewReader(data), trustOf(key), c.target)
			var ue *Error
			if !errors.As(err, &ue) || ue.Reason != c.reason || !strings.Contains(ue.Detail, c.detail) {
				t.Fatalf("got %v, want %s (%s)", err, c.reason, c.detail)
			}
			if s, ok := c.target.(*slotOn); ok && c.reason != ReasonTryFailed && len(s.tried) > 0 {
				t.Errorf("tried %v", s.tried)
			}
		})
	}
	b, _ := os.ReadFile(file)
	if !bytes.Equal(b[:HeadSize], make([]byte, HeadSize)) {
		t.Error("after a failed TryOnce the slot's head is not zeroed")
	}
}

// TestUpdateBusy: a second update while one is being written is refused.
func TestUpdateBusy(t *testing.T) {
	r := newRig(t)
	key := newKey(t, "noc-1")
	img := image(2<<20, 7)
	data := bundle(t, manifestFor(img), img, key)
	pr, pw := io.Pipe()
	done := make(chan Result, 1)
	go func() { done <- r.u.Handle(context.Background(), pr, trustOf(key), "push", false) }()
	pw.Write(data[:len(data)/2]) // the first is now writing
	res := r.u.Handle(context.Background(), bytes.NewReader(data), trustOf(key), "push", false)
	if res.Outcome != OutcomeRejected || res.Reason != string(ReasonBusy) {
		t.Errorf("second update: %+v", res)
	}
	pw.Write(data[len(data)/2:])
	pw.Close()
	if first := <-done; first.Outcome != OutcomeInstalled {
		t.Errorf("first update: %+v", first)
	}
}

// TestUpdateSignatureContexts: an update manifest's signature is not a
// configuration bundle's, nor the reverse, under the same key.
func TestUpdateSignatureContexts(t *testing.T) {
	key := newKey(t, "noc-1")
	img := image(1000, 8)
	h, err := Header(manifestFor(img), key)
	if err != nil {
		t.Fatal(err)
	}
	env := bytes.SplitN(h, []byte("\n"), 2)[1]
	_, _, err = manage.Open(env, manage.Trust{Keys: trustOf(key).Keys, UAI: testUAI, Now: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "bad-signature") {
		t.Errorf("an update manifest opened as a configuration bundle: %v", err)
	}
	cb, _ := manage.Sign(manage.Payload{UAI: testUAI, Version: 7, Expires: time.Now().Add(time.Hour), Config: "version: 1"}, key)
	_, _, err = ReadManifest(bufio.NewReader(bytes.NewReader(append([]byte(magic+strconv.Itoa(len(cb))+"\n"), cb...))), trustOf(key))
	var ue *Error
	if !errors.As(err, &ue) || ue.Reason != ReasonBadSignature {
		t.Errorf("a configuration bundle read as an update manifest: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.2.3", 0},
		{"v1.2.3", "1.2.3", 0},
		{"1.2.3+abc", "1.2.3+def", 0}, // build metadata ignored
		{"1.2.4", "1.2.3", 1},
		{"1.10.0", "1.9.0", 1}, // numbers, not text
		{"2.0.0", "1.99.99", 1},
		{"1.0.0", "1.0.0-rc.1", 1}, // a release after its pre-releases
		{"1.0.0-rc.2", "1.0.0-rc.10", -1},
		{"1.0.0-alpha", "1.0.0-1", 1}, // words after numbers
		{"1.0.0-alpha.1", "1.0.0-alpha", 1},
		{"1.0.0-alpha", "1.0.0-beta", -1},
	} {
		got, err := CompareVersions(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
	}
	for _, bad := range []string{"dev", "1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.x", "20127dd-dirty"} {
		if _, err := CompareVersions(bad, "1.0.0"); err == nil {
			t.Errorf("%q accepted as a version", bad)
		}
	}
}

// TestUpdateFromDevelopmentBuild: a box running a development build
// ("dev") takes any release.
func TestUpdateFromDevelopmentBuild(t *testing.T) {
	r := newRig(t)
	key := newKey(t, "noc-1")
	img := image(5000, 9)
	tr := trustOf(key)
	tr.Running = "dev"
	if res := r.u.Handle(context.Background(), bytes.NewReader(bundle(t, manifestFor(img), img, key)), tr, "push", false); res.Outcome != OutcomeInstalled {
		t.Errorf("%+v", res)
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// BenchmarkInstall64MiB: a 64 MiB image streamed into a file-backed slot
// (on the test's temporary directory's file system): checks, write while
// hashing, sync, read back with the cache dropped, hash again, TryOnce.
func BenchmarkInstall64MiB(b *testing.B) {
	key := newKey(b, "noc-1")
	img := image(64<<20, 13)
	data := bundle(b, manifestFor(img), img, key)
	dir := b.TempDir()
	s, err := CreateFileSlots(dir, 80<<20)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for range b.N {
		if _, err := Install(context.Background(), bytes.NewReader(data), trustOf(key), s); err != nil {
			b.Fatal(err)
		}
	}
}
