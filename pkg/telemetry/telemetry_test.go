package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// receiver is a remote-write endpoint that decodes what it gets, or
// answers 503 while down.
type receiver struct {
	srv  *httptest.Server
	down atomic.Bool

	mu      sync.Mutex
	batches [][]decodedSeries
	headers []http.Header
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(req.Body)
		raw, err := s2.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ss, err := decodeWriteRequest(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.batches = append(r.batches, ss)
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() ([][]decodedSeries, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]decodedSeries(nil), r.batches...), append([]http.Header(nil), r.headers...)
}

func testPlan(url, dir string) *Plan {
	return &Plan{Push: true, URL: url, Interval: 40 * time.Millisecond, UAI: "0599999Y", Academy: "lille",
		Hostname: "passerelle-0599999y", Via: config.TelemetryViaUplink, BufferDir: dir, BufferBytes: 1 << 20,
		Private: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}}
}

// start runs a telemetry service on reg with plan p until the returned
// stop is called.
func start(t *testing.T, reg *prometheus.Registry, p *Plan) (*Telemetry, func()) {
	t.Helper()
	tel, err := New(box.Deps{Log: slog.New(slog.DiscardHandler), Metrics: reg}, Options{Gatherer: reg, NoNodeCollectors: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tel.Run(ctx); close(done) }()
	return tel, func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushCarriesBoxLabelsCredentialsAndTenant(t *testing.T) {
	rcv := newReceiver(t)
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_uplink_state", Help: "x"}, []string{"uplink"})
	g.WithLabelValues("renater").Set(1)
	reg.MustRegister(g)
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	p := testPlan(rcv.srv.URL, t.TempDir())
	p.BearerTokenFile, p.Tenant = tok, "lille"
	_, stop := start(t, reg, p)
	defer stop()
	waitFor(t, "a push", func() bool { b, _ := rcv.received(); return len(b) > 0 })
	batches, headers := rcv.received()
	if got := headers[0].Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("Authorization %q", got)
	}
	if got := headers[0].Get("X-Scope-OrgID"); got != "lille" {
		t.Errorf("X-Scope-OrgID %q", got)
	}
	if got := headers[0].Get("Content-Encoding"); got != "snappy" {
		t.Errorf("Content-Encoding %q", got)
	}
	found := false
	for _, s := range batches[0] {
		if s.labels["__name__"] == "passerelle_uplink_state" {
			found = true
			want := map[string]string{"__name__": "passerelle_uplink_state", "uplink": "renater", "uai": "0599999Y", "academy": "lille", "hostname": "passerelle-0599999y"}
			for k, v := range want {
				if s.labels[k] != v {
					t.Errorf("label %s=%q, want %q (%v)", k, s.labels[k], v, s.labels)
				}
			}
			if s.value != 1 || s.tms == 0 {
				t.Errorf("sample %v at %d", s.value, s.tms)
			}
		}
		if s.labels["uai"] != "0599999Y" {
			t.Errorf("series without the UAI: %v", s.labels)
		}
	}
	if !found {
		t.Error("passerelle_uplink_state not pushed")
	}
}

// During an outage the pushes go to disk; a restart (a new service on the
// same directory) keeps them; when the receiver is back every batch
// arrives, oldest first.
func TestOutageBacklogSurvivesRestartAndIsSentOldestFirst(t *testing.T) {
	rcv := newReceiver(t)
	rcv.down.Store(true)
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_test_ticks_total", Help: "x"})
	reg.MustRegister(c)
	p := testPlan(rcv.srv.URL, dir)
	tel, stop := start(t, reg, p)
	waitFor(t, "5 batches kept", func() bool { n, _ := tel.backlog(); return n >= 5 })
	stop()
	files, _ := filepath.Glob(filepath.Join(dir, "*.rw"))
	if len(files) < 5 {
		t.Fatalf("%d segment files after the first run, want >= 5", len(files))
	}
	// The second run starts with the backlog and keeps adding to it.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "passerelle_test_ticks_total", Help: "x"}))
	tel2, stop2 := start(t, reg2, p)
	defer stop2()
	waitFor(t, "more batches", func() bool { n, _ := tel2.backlog(); return n >= len(files)+3 })
	rcv.down.Store(false)
	waitFor(t, "the backlog sent", func() bool { n, _ := tel2.backlog(); return n == 0 })
	batches, _ := rcv.received()
	if len(batches) < len(files)+3 {
		t.Fatalf("received %d batches, want >= %d", len(batches), len(files)+3)
	}
	var last int64
	for i, b := range batches {
		if len(b) == 0 {
			t.Fatalf("batch %d empty", i)
		}
		if b[0].tms <= last {
			t.Fatalf("batch %d at %d, not after %d: not oldest first", i, b[0].tms, last)
		}
		last = b[0].tms
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.rw"))
	if len(left) != 0 {
		t.Errorf("segments left after the backlog was sent: %v", left)
	}
}

func TestBufferDropsOldestWhenFullAndSkipsCorruptSegments(t *testing.T) {
	dir := t.TempDir()
	drops := map[string]int{}
	b, err := openBuffer(dir, 3000, func(r string, n int) { drops[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		data := make([]byte, 1000)
		data[0] = byte(i)
		b.add(data)
	}
	if n, bytes := b.stats(); n != 3 || bytes != 3000 || drops["full"] != 2 {
		t.Fatalf("backlog %d batches %d bytes, drops %v; want 3, 3000, full=2", n, bytes, drops)
	}
	if err := b.spill(); err != nil {
		t.Fatal(err)
	}
	// Corrupt the oldest segment on disk: reopened, it is dropped.
	files, _ := filepath.Glob(filepath.Join(dir, "*.rw"))
	if len(files) != 3 {
		t.Fatalf("%d segments, want 3", len(files))
	}
	data, _ := os.ReadFile(files[0])
	data[len(data)-1] ^= 0xff
	os.WriteFile(files[0], data, 0o600)
	b2, err := openBuffer(dir, 3000, func(r string, n int) { drops[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	seq, got, ok := b2.head()
	if !ok || got[0] != 3 || drops["corrupt"] != 1 {
		t.Fatalf("head %v %v, drops %v: want batch 3 after dropping the corrupt 2", ok, got[:1], drops)
	}
	b2.pop(seq)
	b2.add([]byte("new"))
	if n, _ := b2.stats(); n != 2 {
		t.Fatalf("backlog %d, want 2", n)
	}
}

func TestLabelsNeverCarryClientAddressesOrMACs(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bad", Help: "x"}, []string{"client"})
	g.WithLabelValues("10.10.0.23").Set(1)
	g.WithLabelValues("aa:bb:cc:dd:ee:ff").Set(1)
	g.WithLabelValues("AA-BB-CC-DD-EE-01").Set(1)
	g.WithLabelValues("203.0.113.10").Set(1) // not a client: kept
	reg.MustRegister(g)
	mfs, _ := reg.Gather()
	e := encoder{external: []label{{"uai", "x"}}, private: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}}
	raw, r := e.encode(mfs, 1)
	ss, err := decodeWriteRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.withheld != 3 || len(ss) != 1 || ss[0].labels["client"] != "203.0.113.10" {
		t.Fatalf("withheld %d, pushed %v", r.withheld, ss)
	}
}

func TestPlanFromConfig(t *testing.T) {
	data, err := os.ReadFile("../../configs/examples/lycee.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("lycee.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	p := PlanFor(cfg)
	if p.Push || len(p.Listen) != 1 || p.Listen[0].Port() != 9100 || p.Hostname == "" {
		t.Errorf("plan %+v", p)
	}
	for _, a := range p.Listen {
		if z := zoneOf(cfg, a.Addr()); z == nil || z.Kind != config.KindAdministrative {
			t.Errorf("/metrics on %s, not an administrative zone", a)
		}
	}
}

func zoneOf(cfg *config.Config, a netip.Addr) *config.Zone {
	for i := range cfg.Zones {
		if cfg.Zones[i].Address == a {
			return &cfg.Zones[i]
		}
	}
	return nil
}
