package telemetry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
)

// TestMetricsListenerCutsSlowAndIdleClients: on /metrics (reachable from
// the schools' zones) a client sending its headers byte by byte, or
// keeping a connection open without a request, is disconnected; a
// scrape is answered; connections beyond the cap wait for one to go.
func TestMetricsListenerCutsSlowAndIdleClients(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(box.Deps{Log: slog.New(slog.DiscardHandler), Metrics: reg}, Options{Gatherer: reg, NoNodeCollectors: true})
	if err != nil {
		t.Fatal(err)
	}
	// listen serves /metrics on a new loopback listener within
	// header and idle timeouts and a cap of two connections.
	listen := func(t *testing.T, timeouts time.Duration) net.Addr {
		s := newServer(tel)
		s.lim.header, s.lim.idle, s.lim.maxConns = timeouts, timeouts, 2
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := s.serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr()
	}
	addr := listen(t, 300*time.Millisecond)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp4", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// readUntilClosed's bound only guards against a hang (the limits
	// here are a fraction of a second); it measures nothing.
	readUntilClosed := func(t *testing.T, c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection is still open after 30 s (read %q)", got)
		}
		return string(got)
	}
	t.Run("headers byte by byte", func(t *testing.T) {
		c := dial(t)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for _, b := range []byte("GET /metrics HTTP/1.1\r\nHost: box\r\nX-Slow: " + strings.Repeat("a", 10000)) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		if got := readUntilClosed(t, c); strings.Contains(got, " 200 ") {
			t.Errorf("a slowloris client was served: %q", got)
		}
	})
	t.Run("kept alive without a request", func(t *testing.T) {
		c := dial(t)
		fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: box\r\n\r\n")
		if got := readUntilClosed(t, c); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("the scrape was not answered: %q", got)
		}
	})
	t.Run("beyond the cap", func(t *testing.T) {
		addr = listen(t, time.Hour) // nothing is cut while the test holds the cap
		held := []net.Conn{dial(t), dial(t)}
		fmt.Fprint(held[1], "GET /metrics HTTP/1.1\r\nHost: box\r\n\r\n") // served, then kept alive
		c := dial(t)
		fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Fatal("a third connection was served while two held the cap")
		}
		held[0].Close()
		held[1].Close()
		if got := readUntilClosed(t, c); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("the waiting scrape, once the others went: %q", got)
		}
	})
}
