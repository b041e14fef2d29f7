package update

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
)

// serveHardened serves the update API over TLS within l, as the box's
// listeners do (httptest's certificate stands in for the box's).
func serveHardened(t *testing.T, api *API, l manage.Limits) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(api)
	ts.Config = l.Server(api, nil)
	ts.Listener = l.Listen(ts.Listener)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// post sends body as POST /v1/update with the declared length.
func post(t *testing.T, ts *httptest.Server, body io.Reader, length int64) (int, Result) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/update", body)
	req.ContentLength = length
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("%s: %v", resp.Status, err)
	}
	return resp.StatusCode, res
}

// TestUpdateBodyNotTheBundleIsRefusedUnwritten: a request whose declared
// length is more than the bundle its manifest describes (413 too-large),
// less (422 malformed), or whose image is larger than the inactive slot
// (413 too-large) is refused before a byte of either slot is written,
// and the slot is not tried.
func TestUpdateBodyNotTheBundleIsRefusedUnwritten(t *testing.T) {
	key := newKey(t, "noc-1")
	img := image(1<<20, 31)
	data := bundle(t, manifestFor(img), img, key)
	huge := bundle(t, manifestFor(image(slotSize+1, 32)), image(slotSize+1, 32), key)
	tests := []struct {
		name   string
		body   []byte
		length int64
		code   int
		reason Reason
		detail string
	}{
		{"longer than its bundle", append(bytes.Clone(data), make([]byte, 4096)...), int64(len(data) + 4096), http.StatusRequestEntityTooLarge, ReasonTooLarge, "more than the"},
		{"shorter than its bundle", data[:len(data)-4096], int64(len(data) - 4096), http.StatusUnprocessableEntity, ReasonMalformed, "less than the"},
		{"image larger than the slot", huge, int64(len(huge)), http.StatusRequestEntityTooLarge, ReasonTooLarge, "slot b holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			trust := trustOf(key)
			ts := serveHardened(t, &API{U: r.u, Trust: func() (Trust, error) { return trust, nil }}, manage.Limits{})
			code, res := post(t, ts, bytes.NewReader(tt.body), tt.length)
			if code != tt.code || res.Outcome != OutcomeRejected || res.Reason != string(tt.reason) || !strings.Contains(res.Detail, tt.detail) {
				t.Errorf("%d %+v; want %d, rejected, %s, %q", code, res, tt.code, tt.reason, tt.detail)
			}
			if !bytes.Equal(r.slot(t, "a"), r.a) || !bytes.Equal(r.slot(t, "b"), r.b) {
				t.Error("a slot was written")
			}
			if st := r.state(t); st.Try != "" {
				t.Errorf("slot %s to be tried", st.Try)
			}
		})
	}
}

// TestUpdateLargeImageOverTheHardenedListener: a 16 MiB image pushed at
// a modest, steady rate through the management API's limits is
// installed, although the upload and the install take far longer than
// the server's read and write timeouts: the body is held to the pace,
// not to them.
func TestUpdateLargeImageOverTheHardenedListener(t *testing.T) {
	const size = 16 << 20
	key := newKey(t, "noc-1")
	dir := t.TempDir()
	s, err := CreateFileSlots(filepath.Join(dir, "slots"), size)
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, Options{Dir: filepath.Join(dir, "results"), Target: s})
	if err != nil {
		t.Fatal(err)
	}
	trust := trustOf(key)
	ts := serveHardened(t, &API{U: u, Trust: func() (Trust, error) { return trust, nil }},
		manage.Limits{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	img := image(size, 41)
	data := bundle(t, manifestFor(img), img, key)
	pr, pw := io.Pipe()
	go func() {
		// 64 chunks with a pause after each: the upload lasts over a
		// second, at some 10 MiB/s, far above the default minimum rate.
		step := len(data)/64 + 1
		for i := 0; i < len(data); i += step {
			if _, err := pw.Write(data[i:min(i+step, len(data))]); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		pw.Close()
	}()
	defer pr.Close()
	code, res := post(t, ts, pr, int64(len(data)))
	if code != http.StatusOK || res.Outcome != OutcomeInstalled || res.Size != size {
		t.Fatalf("%d %+v", code, res)
	}
	if st, _ := s.State(); st.Try != res.Slot {
		t.Errorf("slot %s installed, %q to be tried", res.Slot, st.Try)
	}
}
