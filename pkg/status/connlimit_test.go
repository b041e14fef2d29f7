package status

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Loopback addresses stand for the pupils' laptops: Linux answers the
// whole of 127.0.0.0/8, so each test client dials from its own source.
var (
	pupilA = netip.MustParseAddr("127.0.0.2")
	pupilB = netip.MustParseAddr("127.0.0.3")
	pupilC = netip.MustParseAddr("127.0.0.4")
)

// hangGuard only keeps a broken test from hanging: nothing here is
// measured against it.
const hangGuard = 30 * time.Second

// limitedPage serves kind ("http": the peda zone's block page; "https":
// the status page) on a loopback listener within lim. Its header and
// idle timeouts are long, so a silent connection keeps its slot for the
// test's whole duration, however loaded the machine.
type limitedPage struct {
	t    testing.TB
	s    *Server
	l    *listener
	addr string
	logs *logBuffer
}

func newLimitedPage(t testing.TB, kind string, lim ConnLimits, timeouts httpTimeouts) *limitedPage {
	t.Helper()
	logs := &logBuffer{}
	clk := &clock{t: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	s := New(Options{Source: &fakeSource{cfg: testConfig(t, "")}, Now: clk.now, Metrics: prometheus.NewRegistry(),
		Log:            slog.New(slog.NewJSONHandler(logs, nil)),
		BlockPageConns: lim, StatusPageConns: lim})
	s.timeouts = timeouts
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	zone := "peda"
	if kind == "https" {
		zone = "admin"
	}
	l := &listener{kind: kind, zone: zone, addr: ln.Addr().String()}
	if err := s.serve(ln, l); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.srv.Close() })
	return &limitedPage{t: t, s: s, l: l, addr: l.addr, logs: logs}
}

func longTimeouts() httpTimeouts {
	return httpTimeouts{header: time.Hour, read: time.Hour, write: time.Hour, idle: time.Hour}
}

// dial connects from the source address from; the connection is closed
// at the test's end.
func (p *limitedPage) dial(from netip.Addr) net.Conn {
	p.t.Helper()
	c := p.hold(from)
	if p.l.kind == "https" {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the box's self-signed certificate
		p.t.Cleanup(func() { tc.Close() })
		return tc
	}
	return c
}

// hold opens a connection from from that sends nothing: busy (waiting
// for its request, or its TLS handshake) until closed.
func (p *limitedPage) hold(from netip.Addr) net.Conn {
	p.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: hangGuard}
	c, err := d.Dial("tcp4", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

// get asks for a blocked name's page (the block page) or the login
// page (the status page) on c, kept alive, and returns the status and
// body.
func (p *limitedPage) get(c net.Conn) (int, string) {
	p.t.Helper()
	path, host := "/", "www.casino.test"
	if p.l.kind == "https" {
		path, host = "/login", "10.20.0.1"
	}
	c.SetDeadline(time.Now().Add(hangGuard))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		p.t.Fatalf("request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		p.t.Fatalf("answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("answer's body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// wantPage checks that c is answered with the page.
func (p *limitedPage) wantPage(c net.Conn, who string) {
	p.t.Helper()
	code, body := p.get(c)
	want, text := http.StatusForbidden, "gambling"
	if p.l.kind == "https" {
		want, text = http.StatusOK, "csrf"
	}
	if code != want || !strings.Contains(body, text) {
		p.t.Fatalf("%s: %d, want %d with %q:\n%s", who, code, want, text, body)
	}
}

// untilClosed reads c until the server closes it.
func (p *limitedPage) untilClosed(c net.Conn, who string) string {
	p.t.Helper()
	c.SetReadDeadline(time.Now().Add(hangGuard))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatalf("%s: still open after %s", who, hangGuard)
	}
	return string(got)
}

// wantClosed checks that the server closed c without answering.
func (p *limitedPage) wantClosed(c net.Conn, who string) {
	p.t.Helper()
	if got := p.untilClosed(c, who); len(got) > 0 {
		p.t.Fatalf("%s: answered %q, want closed", who, got)
	}
}

// wantRefused checks that a connection from from is closed without an
// answer: at once, so quickly that the reset may even reach the dial.
func (p *limitedPage) wantRefused(from netip.Addr, who string) {
	p.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: hangGuard}
	c, err := d.Dial("tcp4", p.addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close()
	p.wantClosed(c, who)
}

// wantCut checks that the server ended c without the page (net/http
// may say 400 to a request cut by its header timeout).
func (p *limitedPage) wantCut(c net.Conn, who string) {
	p.t.Helper()
	if got := p.untilClosed(c, who); strings.Contains(got, "gambling") {
		p.t.Fatalf("%s: served the page: %q", who, got)
	}
}

// waitFor polls the listener's counts until cond holds; the bound
// guards against a hang only.
func (p *limitedPage) waitFor(what string, cond func(connCounts) bool) {
	p.t.Helper()
	end := time.Now().Add(hangGuard)
	for {
		cc := p.l.conns.counts()
		if cond(cc) {
			return
		}
		if time.Now().After(end) {
			p.t.Fatalf("waiting for %s: %+v", what, cc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *limitedPage) counter(name, reason string) float64 {
	m := p.s.conns
	switch name {
	case "refused":
		return testutil.ToFloat64(m.refused.WithLabelValues(p.l.kind, p.l.zone, reason))
	case "idle-closed":
		return testutil.ToFloat64(m.idleClosed.WithLabelValues(p.l.kind, p.l.zone, reason))
	case "full":
		return testutil.ToFloat64(m.full.WithLabelValues(p.l.kind, p.l.zone))
	}
	p.t.Fatalf("no counter %s", name)
	return 0
}

// events counts the log records with event status-connections-limited
// and reason.
func (p *limitedPage) events(reason string) int {
	n := 0
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, `"event":"status-connections-limited"`) && strings.Contains(line, `"reason":"`+reason+`"`) {
			n++
		}
	}
	return n
}

// logBuffer is the page's log, written by its goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOneClientOverItsCapIsClosedOthersServed: on the block page and
// on the status page, a client holding its cap of busy connections has
// its next ones accepted and closed at once (counted, and said in one
// rate-limited warning, not one per connection), while another client
// still gets the page, and the held connections are still answered.
func TestOneClientOverItsCapIsClosedOthersServed(t *testing.T) {
	for _, kind := range []string{"http", "https"} {
		t.Run(kind, func(t *testing.T) {
			p := newLimitedPage(t, kind, ConnLimits{Max: 16, PerClient: 3}, longTimeouts())
			var held []net.Conn
			for range 3 {
				held = append(held, p.hold(pupilA))
			}
			p.waitFor("A's three connections", func(cc connCounts) bool { return cc.byClient[pupilA] == 3 })
			const over = 20
			for i := range over {
				p.wantRefused(pupilA, fmt.Sprintf("A's connection %d over the cap", i+1))
			}
			if got := p.counter("refused", "client"); got != over {
				t.Errorf("refused{reason=client} = %v, want %d", got, over)
			}
			// The fake clock stands still: one line for the 20.
			if got := p.events("client"); got != 1 {
				t.Errorf("%d status-connections-limited warnings for %d refusals, want 1:\n%s", got, over, p.logs)
			}
			p.wantPage(p.dial(pupilB), "B while A is over its cap")
			// A's held connections were not harmed.
			c := held[0]
			if kind == "https" {
				c = tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the box's self-signed certificate
			}
			p.wantPage(c, "A's held connection")
			if cc := p.l.conns.counts(); cc.peak > 3+1 {
				t.Errorf("peak %d connections, want at most A's 3 and B's 1", cc.peak)
			}
		})
	}
}

// TestIdleConnectionsMakeRoom: connections kept alive between requests
// (a browser's, after a page of blocked ad hosts) never lock their own
// client or others out: the oldest idle one is closed for the new one.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	tests := []struct {
		name string
		lim  ConnLimits
		// idle are the clients whose connections go idle, in order.
		idle []netip.Addr
		// next is the client of the new connection.
		next   netip.Addr
		reason string // the cap reached
	}{
		{"a client at its own cap", ConnLimits{Max: 16, PerClient: 3}, []netip.Addr{pupilA, pupilA, pupilA}, pupilA, "client"},
		{"a full listener", ConnLimits{Max: 3, PerClient: 2}, []netip.Addr{pupilA, pupilB, pupilA}, pupilC, "total"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newLimitedPage(t, "http", tt.lim, longTimeouts())
			var conns []net.Conn
			for i, from := range tt.idle {
				c := p.dial(from)
				p.wantPage(c, fmt.Sprintf("connection %d", i+1))
				conns = append(conns, c)
				// Idle in a known order: the first is the oldest.
				p.waitFor("the connection idle", func(cc connCounts) bool {
					n := 0
					for _, v := range cc.idle {
						n += v
					}
					return n == i+1
				})
			}
			p.wantPage(p.dial(tt.next), "the new connection")
			p.wantClosed(conns[0], "the oldest idle connection")
			if got := p.counter("idle-closed", tt.reason); got != 1 {
				t.Errorf("idle_connections_closed{reason=%s} = %v, want 1", tt.reason, got)
			}
			if got := p.counter("refused", "client"); got != 0 {
				t.Errorf("%v connections refused, want none", got)
			}
			p.wantPage(conns[1], "the next idle connection, still open")
		})
	}
}

// TestFullListenerWaitsThenServes: with every slot busy, the cap holds:
// new connections are not served (they wait in the kernel's backlog, not
// refused) until a slot frees; then every waiting pupil gets the page,
// and the listener never held more than its cap.
func TestFullListenerWaitsThenServes(t *testing.T) {
	p := newLimitedPage(t, "http", ConnLimits{Max: 2, PerClient: 2}, longTimeouts())
	a, b := p.hold(pupilA), p.hold(pupilB)
	p.waitFor("A and B held", func(cc connCounts) bool { return cc.total == 2 })
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 4)
	waiting := []netip.Addr{pupilC, netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("127.0.0.6"), netip.MustParseAddr("127.0.0.7")}
	for _, from := range waiting {
		c := p.dial(from)
		go func() {
			// p.get would call t.Fatal off the test's goroutine.
			c.SetDeadline(time.Now().Add(hangGuard))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: www.casino.test\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				done <- answer{0, err.Error()}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- answer{resp.StatusCode, string(body)}
		}()
	}
	// The accepting goroutine found the listener full: it waits.
	end := time.Now().Add(hangGuard)
	for p.counter("full", "") == 0 {
		if time.Now().After(end) {
			t.Fatal("the listener never found itself full")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if cc := p.l.conns.counts(); cc.total != 2 || cc.byClient[pupilC] != 0 {
		t.Fatalf("while full: %+v, want A's and B's only", cc)
	}
	a.Close()
	b.Close()
	for range waiting {
		if got := <-done; got.code != http.StatusForbidden || !strings.Contains(got.body, "gambling") {
			t.Errorf("a waiting pupil got %d %s", got.code, got.body)
		}
	}
	if cc := p.l.conns.counts(); cc.peak > 2 {
		t.Errorf("%d connections at once, over the cap of 2", cc.peak)
	}
	if got := p.counter("refused", "client"); got != 0 {
		t.Errorf("%v refused, want none: a full listener makes pupils wait", got)
	}
	if got := p.events("total"); got != 1 {
		t.Errorf("%d warnings of a full listener, want 1 (rate-limited):\n%s", got, p.logs)
	}
}

// TestBlockPageCutsSlowClients: on the block page, a client sending its
// headers byte by byte (slowloris), or keeping a connection open with
// no request, is cut by the header and idle timeouts, and its slot
// given back.
func TestBlockPageCutsSlowClients(t *testing.T) {
	short := httpTimeouts{header: 300 * time.Millisecond, read: time.Hour, write: time.Hour, idle: 300 * time.Millisecond}
	tests := []struct {
		name string
		run  func(p *limitedPage, c net.Conn)
	}{
		{"headers byte by byte", func(p *limitedPage, c net.Conn) {
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				req := "GET / HTTP/1.1\r\nHost: www.casino.test\r\nX-Slow: " + strings.Repeat("a", 10000)
				for i := range len(req) {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := c.Write([]byte{req[i]}); err != nil {
						return
					}
				}
			}()
			p.wantCut(c, "the slowloris")
		}},
		{"silent connection", func(p *limitedPage, c net.Conn) {
			p.wantClosed(c, "the silent connection")
		}},
		{"idle after a request", func(p *limitedPage, c net.Conn) {
			p.wantPage(c, "the request")
			p.wantClosed(c, "the idle connection")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newLimitedPage(t, "http", ConnLimits{Max: 4, PerClient: 2}, short)
			tt.run(p, p.dial(pupilA))
			p.waitFor("the slot given back", func(cc connCounts) bool { return cc.total == 0 })
		})
	}
}

// TestConnLimitsDefaults: unset limits are the defaults of the
// listener's kind; a client's cap is never above the listener's.
func TestConnLimitsDefaults(t *testing.T) {
	tests := []struct {
		kind string
		in   ConnLimits
		want ConnLimits
	}{
		{"http", ConnLimits{Max: 100}, ConnLimits{Max: 100, PerClient: DefaultBlockPagePerClient}},
		{"https", ConnLimits{Max: 20}, ConnLimits{Max: 20, PerClient: DefaultStatusPagePerClient}},
		{"http", ConnLimits{Max: 4, PerClient: 10}, ConnLimits{Max: 4, PerClient: 4}},
	}
	for _, tt := range tests {
		if got := tt.in.withDefaults(tt.kind); got != tt.want {
			t.Errorf("%s %+v: %+v, want %+v", tt.kind, tt.in, got, tt.want)
		}
	}
	if got := (ConnLimits{}).withDefaults("http"); got.Max <= 0 || got.Max > DefaultBlockPageMax || got.PerClient != DefaultBlockPagePerClient {
		t.Errorf("block page defaults: %+v", got)
	}
}

// BenchmarkBlockPageDuringFlood: a pupil's block page on a new
// connection (connect, GET, answer, close), on a quiet listener and while
// another pupil holds its 16 busy connections and opens new ones in a
// loop (each reset on accept). Default limits. docs/benchmarks.md.
func BenchmarkBlockPageDuringFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "quiet"
		if flood {
			name = "one-pupil-flooding"
		}
		b.Run(name, func(b *testing.B) {
			p := newLimitedPage(b, "http", ConnLimits{}, defaultHTTPTimeouts())
			stop := make(chan struct{})
			flooded := make(chan int)
			if flood {
				for range DefaultBlockPagePerClient {
					p.hold(pupilA)
				}
				go func() {
					n := 0
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: pupilA.AsSlice()}}
					for {
						select {
						case <-stop:
							flooded <- n
							return
						default:
						}
						if c, err := d.Dial("tcp4", p.addr); err == nil {
							n++
							c.Close()
						}
					}
				}()
			}
			b.ResetTimer()
			for b.Loop() {
				c := p.dial(pupilB)
				p.wantPage(c, "B")
				c.Close()
			}
			b.StopTimer()
			close(stop)
			if flood {
				n := <-flooded
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flood-conns/s")
				b.ReportMetric(p.counter("refused", "client")/b.Elapsed().Seconds(), "refused/s")
			}
		})
	}
}
