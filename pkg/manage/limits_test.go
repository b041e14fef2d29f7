package manage

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serveHardened serves h over TLS within l, as cmd/passerelle serves the
// management API (httptest's certificate stands in for the box's).
func serveHardened(t *testing.T, h http.Handler, l Limits) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config = l.Server(h, nil)
	ts.Listener = l.Listen(ts.Listener)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// dialTLS opens a raw TLS connection to ts, closed at the test's end.
func dialTLS(t *testing.T, ts *httptest.Server) net.Conn {
	t.Helper()
	conf := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c, err := tls.Dial("tcp", ts.Listener.Addr().String(), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTCP opens a raw TCP connection to ts that never starts TLS.
func dialTCP(t *testing.T, ts *httptest.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dribble writes b then filler one byte at a time, every 10 ms, until a
// write fails (the box cut the connection) or stop is closed.
func dribble(c net.Conn, b []byte, filler byte, stop <-chan struct{}) {
	for i := 0; ; i++ {
		one := filler
		if i < len(b) {
			one = b[i]
		}
		if _, err := c.Write([]byte{one}); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readUntilClosed reads c until the box closes it; it fails the test if
// c is still open after a generous bound (the box's limits in these
// tests are a fraction of a second: the bound only guards against a
// hang, it measures nothing).
func readUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after 30 s (read %q)", got)
	}
	return string(got)
}

// TestSlowClientsAreCutOff: a client that sends its headers byte by
// byte (slowloris), one that never starts TLS, one that keeps a
// connection open without a request, and one that sends a bundle
// slower than the pace are each disconnected by the box; none of them
// changes the box's state.
func TestSlowClientsAreCutOff(t *testing.T) {
	r := newRig(t)
	api := &API{M: r.m, Pace: Pace{Grace: 300 * time.Millisecond, MinRate: 1 << 20, Stall: time.Minute}}
	ts := serveHardened(t, api, Limits{HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	before, _ := r.m.store.List()
	tests := []struct {
		name string
		run  func(t *testing.T, stop <-chan struct{}) string // what the box answered before it hung up
	}{
		{"headers byte by byte", func(t *testing.T, stop <-chan struct{}) string {
			c := dialTLS(t, ts)
			go dribble(c, []byte("GET /v1/status HTTP/1.1\r\nHost: box\r\nX-Slow: "), 'a', stop)
			return readUntilClosed(t, c)
		}},
		{"TLS never started", func(t *testing.T, stop <-chan struct{}) string {
			return readUntilClosed(t, dialTCP(t, ts))
		}},
		{"kept alive without a request", func(t *testing.T, stop <-chan struct{}) string {
			c := dialTLS(t, ts)
			fmt.Fprint(c, "GET /v1/status HTTP/1.1\r\nHost: box\r\n\r\n")
			return readUntilClosed(t, c)
		}},
		{"bundle body byte by byte", func(t *testing.T, stop <-chan struct{}) string {
			c := dialTLS(t, ts)
			fmt.Fprint(c, "POST /v1/bundles HTTP/1.1\r\nHost: box\r\nContent-Length: 100000\r\n\r\n")
			go dribble(c, []byte(`{"payload": "`), 'A', stop)
			return readUntilClosed(t, c)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop := make(chan struct{})
			defer close(stop)
			got := tt.run(t, stop)
			if tt.name == "kept alive without a request" {
				if !strings.HasPrefix(got, "HTTP/1.1 200") {
					t.Errorf("the request before the idle time was not answered: %q", got)
				}
			} else if strings.Contains(got, " 200 ") || strings.Contains(got, " 202 ") {
				t.Errorf("a slow client was served: %q", got)
			}
		})
	}
	if rs, _ := r.m.store.Results(); len(rs) != 0 {
		t.Errorf("results kept for slow clients: %+v", rs)
	}
	if gs, _ := r.m.store.List(); len(gs) != len(before) || r.m.Status().Pending != nil || len(r.box.calls()) != 0 {
		t.Errorf("slow clients changed the box: generations %+v, submits %v", gs, r.box.calls())
	}
}

// TestConnectionsBeyondTheCapWait: with MaxConns connections held open
// (a flood that never starts TLS), the next client is not served until
// one of them goes; then it is.
func TestConnectionsBeyondTheCapWait(t *testing.T) {
	r := newRig(t)
	ts := serveHardened(t, &API{M: r.m}, Limits{MaxConns: 2, HeaderTimeout: time.Hour})
	flood := []net.Conn{dialTCP(t, ts), dialTCP(t, ts)}
	done := make(chan error, 1)
	go func() {
		resp, err := ts.Client().Get(ts.URL + "/v1/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a third connection was served while two held the cap (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	flood[0].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting client, once a connection went: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting client was not served after a connection went")
	}
}

// TestBodiesOverTheLimitAreRefused: a bundle or a certificate envelope
// larger than it may be is answered 413 with the reason too-large,
// whether its length is declared or it is streamed; nothing of it is
// applied, kept as a generation or installed; a refused bundle is
// recorded like every refusal.
func TestBodiesOverTheLimitAreRefused(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		size     int64
		streamed bool
		limit    int64
	}{
		{"bundle of declared length", "/v1/bundles", MaxBundleSize + 1, false, MaxBundleSize},
		{"streamed bundle", "/v1/bundles", MaxBundleSize + 1, true, MaxBundleSize},
		{"bundle of 64 MiB", "/v1/bundles", 64 << 20, false, MaxBundleSize},
		{"certificate envelope of declared length", "/v1/cert", MaxCertSize + 1, false, MaxCertSize},
		{"streamed certificate envelope", "/v1/cert", MaxCertSize + 1, true, MaxCertSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			inst := &recordingInstaller{}
			ts := serveHardened(t, &API{M: r.m, Cert: inst}, Limits{})
			before, _ := r.m.store.List()
			var body io.Reader = io.LimitReader(repeat('{'), tt.size)
			req, _ := http.NewRequest(http.MethodPost, ts.URL+tt.path, body)
			req.ContentLength = tt.size
			if tt.streamed {
				req.ContentLength = -1
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var res struct{ Outcome, Reason, Detail string }
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				t.Fatalf("%s: %v", resp.Status, err)
			}
			want := fmt.Sprintf("more than the %d bytes", tt.limit)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || res.Outcome != OutcomeRejected || res.Reason != string(ReasonTooLarge) || !strings.Contains(res.Detail, want) {
				t.Errorf("%s %+v; want 413, rejected, too-large, %q", resp.Status, res, want)
			}
			after, _ := r.m.store.List()
			if len(after) != len(before) || r.m.Status().Pending != nil || len(r.box.calls()) != 0 || inst.calls != 0 {
				t.Errorf("an oversized body changed the box: generations %d then %d, status %+v, submits %v, installs %d",
					len(before), len(after), r.m.Status(), r.box.calls(), inst.calls)
			}
			rs, _ := r.m.store.Results()
			if tt.path == "/v1/bundles" && (len(rs) != 1 || rs[0].Reason != string(ReasonTooLarge)) {
				t.Errorf("the refusal is not recorded: %+v", rs)
			}
		})
	}
}

// TestLargeBundleWithinTheLimitsIsApplied: a bundle near MaxBundleSize
// (a configuration of almost 1 MiB), pushed with wait over the hardened
// listener, is applied and committed, although the box's read deadlines
// are far shorter than the wait for the health gate: the deadlines end
// with the body.
func TestLargeBundleWithinTheLimitsIsApplied(t *testing.T) {
	r := newRig(t)
	ts := serveHardened(t, &API{M: r.m, Pace: Pace{Grace: 50 * time.Millisecond, MinRate: 1 << 30}},
		Limits{ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	b := r.bundle(t, 7, "large", func(p *Payload) {
		p.Config += strings.Repeat("# padding a configuration to nearly a megabyte, as a big school's may be\n", 900<<10/73)
	})
	if len(b) < 1<<20 || len(b) > MaxBundleSize {
		t.Fatalf("the bundle is %d bytes; the test wants more than 1 MiB and at most %d", len(b), MaxBundleSize)
	}
	out := PushOne(context.Background(), ts.Client(), Target{UAI: "0599999Y", URL: ts.URL, Bundle: b})
	if out.Outcome != OutcomeCommitted {
		t.Errorf("a large bundle: %+v", out)
	}
}

// recordingInstaller counts the certificates the API would install.
type recordingInstaller struct{ calls int }

func (i *recordingInstaller) InstallCertificate(_, _ []byte) (string, error) {
	i.calls++
	return "", errors.New("not in this test")
}

// repeat is an endless reader of one byte.
type repeat byte

func (b repeat) Read(p []byte) (int, error) {
	copy(p, bytes.Repeat([]byte{byte(b)}, len(p)))
	return len(p), nil
}
