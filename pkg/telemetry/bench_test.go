package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
)

// BenchmarkCollectAndPush is one cycle of the box: gather the registry
// (node_exporter's collectors of this machine plus the push's own
// metrics), encode, compress, queue and post to a receiver on loopback.
// It reports the series and compressed bytes of one push.
func BenchmarkCollectAndPush(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	tel, err := New(box.Deps{Log: slog.New(slog.DiscardHandler), Metrics: reg}, Options{Gatherer: reg})
	if err != nil {
		b.Fatal(err)
	}
	p := testPlan(srv.URL, b.TempDir())
	u, err := tel.newPusher(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	never := func() bool { return false }
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		u.collect()
		u.drain(context.Background(), never)
	}
	b.StopTimer()
	// CPU time of the whole process (collectors run in goroutines, the
	// receiver too): the wall time per op depends on the machine's load.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	mfs, _ := reg.Gather()
	raw, r := u.enc.encode(mfs, 1)
	b.ReportMetric(float64(r.series), "series")
	b.ReportMetric(float64(len(s2.EncodeSnappy(nil, raw))), "payload-bytes")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
