package status

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every connection to the page costs the daemon a file descriptor, a
// goroutine and its buffers until it closes, and the daemon is PID 1:
// DNS, DHCP and the management API share its file limit and memory. The
// block page listens on the pupils' zones, where any laptop can run a
// script that opens thousands of connections. Each listener therefore
// caps its connections in all and per client address (ConnLimits).
//
// The block page's legitimate load shapes the policy. The DNS filter
// answers every blocked name with the box's address, so a page full of
// blocked plain-HTTP ad and tracker hosts makes a browser open one
// connection per host (HTTP/1.1 pools connections per host name, not per
// address), all at once, all kept alive afterwards. So:
//
//   - a connection that is idle between requests (kept alive) is cheap to
//     close: the browser opens a new one, or retries its request on a
//     new one if it raced the close (as with any keep-alive timeout).
//     When a client is at its cap, its oldest idle connection is closed
//     to let the new one in; when the listener is full, the oldest idle
//     connection of any client is. Idle connections never lock anyone
//     out;
//   - a client at its cap with no idle connection (every one waits for
//     headers or is being answered: a script, or slowloris) has its new
//     connection accepted and closed at once, with a reset;
//   - a listener full of busy connections accepts nothing more until one
//     ends: new connections wait in the kernel's backlog (they cost the
//     daemon nothing there), and the header timeout frees the slots of
//     slow clients within seconds. An honest pupil waits, and is not
//     refused.
type ConnLimits struct {
	// Max is the number of connections one listener serves at once.
	Max int
	// PerClient is the number of connections one client address holds
	// at once on one listener.
	PerClient int
}

// Default limits. The block page answers in well under a millisecond,
// so a slot is busy only while a request arrives or a slow client holds
// it: 512 busy connections are hundreds of pupils at the same second,
// and idle ones make room by themselves. 16 per address is more than the
// 6 connections a browser opens to one host name, and bursts of more
// hosts than that keep the block page working once the earlier ones
// are idle; a device behind a NAT (not the school's design: every device
// has its own address in its zone) would share its 16. The technician's
// HTTPS page has a few users: 64 in all.
const (
	DefaultBlockPageMax        = 512
	DefaultBlockPagePerClient  = 16
	DefaultStatusPageMax       = 64
	DefaultStatusPagePerClient = 16
	// connLimitedLogEvery: the limits' warnings are logged at most this
	// often per listener and reason, with the number since the last
	// line: one line per refused connection would itself be a flood.
	connLimitedLogEvery = 10 * time.Second
)

// withDefaults fills unset fields with kind's defaults and lowers Max to
// an eighth of the process's file limit when that is small (a test, a
// container: as PID 1 the daemon raises it to the kernel's maximum), so
// the page's listeners together never take the descriptors the DNS
// filter, DHCP and the uplinks need.
func (l ConnLimits) withDefaults(kind string) ConnLimits {
	dmax, dper := DefaultBlockPageMax, DefaultBlockPagePerClient
	if kind == "https" {
		dmax, dper = DefaultStatusPageMax, DefaultStatusPagePerClient
	}
	if l.Max <= 0 {
		l.Max = dmax
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur/8 < uint64(l.Max) {
			l.Max = int(max(rl.Cur/8, 16))
		}
	}
	if l.PerClient <= 0 {
		l.PerClient = dper
	}
	l.PerClient = min(l.PerClient, l.Max)
	return l
}

// connMetrics count what the limits did, per listener (kind, zone).
type connMetrics struct {
	open       *prometheus.GaugeVec   // kind, zone
	refused    *prometheus.CounterVec // kind, zone, reason
	idleClosed *prometheus.CounterVec // kind, zone, reason
	full       *prometheus.CounterVec // kind, zone
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_status_connections",
			Help: "Connections open on a status page or block page listener (kind https or http, zone)."}, []string{"kind", "zone"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_status_connections_refused_total",
			Help: "Connections closed on accept, by listener and reason: client (the address held its cap of busy connections), descriptors (the process was out of files or memory)."},
			[]string{"kind", "zone", "reason"}),
		idleClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_status_idle_connections_closed_total",
			Help: "Kept-alive idle connections closed to let a new one in, by listener and the cap reached: client (the address's) or total (the listener's)."},
			[]string{"kind", "zone", "reason"}),
		full: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_status_listener_full_total",
			Help: "Times a listener had every slot busy: new connections waited in the kernel's backlog until one ended."}, []string{"kind", "zone"}),
	}
	if reg != nil {
		reg.MustRegister(m.open, m.refused, m.idleClosed, m.full)
	}
	return m
}

// connLimiter holds one listener's connections.
type connLimiter struct {
	lim        ConnLimits
	kind, zone string
	log        *slog.Logger
	now        func() time.Time
	open       prometheus.Gauge
	refused    *prometheus.CounterVec // reason
	idleClosed *prometheus.CounterVec // reason
	full       prometheus.Counter

	mu       sync.Mutex
	total    int
	peak     int                           // the most connections open at once
	byClient map[netip.Addr][]*limitedConn // oldest first
	idleSeq  uint64                        // orders idle connections, oldest first
	freed    chan struct{}                 // signalled when a slot is given back or a connection goes idle

	// Rate-limited warnings: events since the last line, per reason.
	logMu    sync.Mutex
	lastLog  map[string]time.Time
	sinceLog map[string]int
}

func newConnLimiter(lim ConnLimits, kind, zone string, m *connMetrics, log *slog.Logger, now func() time.Time) *connLimiter {
	return &connLimiter{lim: lim.withDefaults(kind), kind: kind, zone: zone, log: log, now: now,
		open:       m.open.WithLabelValues(kind, zone),
		refused:    m.refused.MustCurryWith(prometheus.Labels{"kind": kind, "zone": zone}),
		idleClosed: m.idleClosed.MustCurryWith(prometheus.Labels{"kind": kind, "zone": zone}),
		full:       m.full.WithLabelValues(kind, zone),
		byClient:   map[netip.Addr][]*limitedConn{}, freed: make(chan struct{}, 1),
		lastLog: map[string]time.Time{}, sinceLog: map[string]int{}}
}

// admit counts c in, or says which limit keeps it out: "client", its
// client is at its cap and none of its connections is idle (refuse c);
// "total", the listener is full of busy connections (c waits). To let
// c in, a client at its cap gives up its oldest idle connection, and a
// full listener the oldest idle one of any client: returned, to be
// closed, with the limit that made it go.
func (l *connLimiter) admit(c *limitedConn) (evicted *limitedConn, limit string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mine := l.byClient[c.client]; len(mine) >= l.lim.PerClient {
		limit, evicted = "client", oldestIdle(mine)
	} else if l.total >= l.lim.Max {
		limit = "total"
		for _, cs := range l.byClient {
			if o := oldestIdle(cs); o != nil && (evicted == nil || o.idleAt < evicted.idleAt) {
				evicted = o
			}
		}
	}
	if limit != "" && evicted == nil {
		return nil, limit, false
	}
	if evicted != nil {
		l.removeLocked(evicted)
	}
	c.counted.Store(true)
	l.total++
	l.peak = max(l.peak, l.total)
	l.byClient[c.client] = append(l.byClient[c.client], c)
	l.open.Set(float64(l.total))
	return evicted, limit, true
}

func oldestIdle(cs []*limitedConn) *limitedConn {
	var o *limitedConn
	for _, c := range cs {
		if c.idleAt != 0 && (o == nil || c.idleAt < o.idleAt) {
			o = c
		}
	}
	return o
}

// removeLocked gives c's slot back; it is closed by its own Close or by
// the caller. A connection is removed once.
func (l *connLimiter) removeLocked(c *limitedConn) {
	if !c.counted.CompareAndSwap(true, false) {
		return
	}
	cs := l.byClient[c.client]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) > 0 {
		l.byClient[c.client] = cs
	} else {
		delete(l.byClient, c.client)
	}
	l.total--
	l.open.Set(float64(l.total))
	l.signal()
}

func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(c)
}

// setIdle records whether c waits between requests (net/http's
// ConnState): only idle connections are closed to make room.
func (l *connLimiter) setIdle(c *limitedConn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !idle {
		c.idleAt = 0
		return
	}
	l.idleSeq++
	c.idleAt = l.idleSeq
	l.signal() // an idle connection makes room for a waiting one
}

// signal wakes an Accept waiting for room.
func (l *connLimiter) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// connCounts are a listener's connections now.
type connCounts struct {
	total, peak int
	byClient    map[netip.Addr]int
	idle        map[netip.Addr]int
}

func (l *connLimiter) counts() connCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	cc := connCounts{total: l.total, peak: l.peak, byClient: map[netip.Addr]int{}, idle: map[netip.Addr]int{}}
	for a, cs := range l.byClient {
		cc.byClient[a] = len(cs)
		for _, c := range cs {
			if c.idleAt != 0 {
				cc.idle[a]++
			}
		}
	}
	return cc
}

// warn logs that a limit was reached, at most once per
// connLimitedLogEvery and reason, with how many times since the last
// line. It names the client over its own cap (an address, never what it
// asked for), not the clients of a full listener.
func (l *connLimiter) warn(reason string, client netip.Addr) {
	now := l.now()
	l.logMu.Lock()
	l.sinceLog[reason]++
	if !l.lastLog[reason].IsZero() && now.Sub(l.lastLog[reason]) < connLimitedLogEvery {
		l.logMu.Unlock()
		return
	}
	n := l.sinceLog[reason]
	l.sinceLog[reason] = 0
	l.lastLog[reason] = now
	l.logMu.Unlock()
	attrs := []any{"event", "status-connections-limited", "kind", l.kind, "zone", l.zone, "reason", reason, "times", n, "per", connLimitedLogEvery.String()}
	switch reason {
	case "client":
		attrs = append(attrs, "limit", l.lim.PerClient, "client", client.String())
	case "total":
		attrs = append(attrs, "limit", l.lim.Max)
	}
	l.log.Warn("status page: connections over the limit", attrs...)
}

// listener returns ln within l's limits.
func (l *connLimiter) listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	l         *connLimiter
	done      chan struct{}
	closeOnce sync.Once
}

// Accept returns the next connection within the limits. A connection
// over its client's cap is closed here, before any byte is read. While
// the listener is full of busy connections, the one just accepted
// waits for a slot, and the others in the kernel's backlog (where they
// cost the daemon nothing). Errors go to net/http, which backs off on
// temporary ones (out of descriptors) rather than spin.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				ll.l.refused.WithLabelValues("descriptors").Inc()
				ll.l.warn("descriptors", netip.Addr{})
			}
			return nil, err
		}
		if lc, ok := ll.admit(c); ok {
			return lc, nil
		} else if lc == nil {
			return nil, net.ErrClosed
		}
	}
}

// admit lets c in, waiting for a slot while the listener is full; it
// returns false when c was refused (lc set) or the listener closed
// (lc nil).
func (ll *limitListener) admit(c net.Conn) (lc *limitedConn, ok bool) {
	client := netip.Addr{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		client = ip.Unmap()
	}
	lc = &limitedConn{Conn: c, l: ll.l, client: client}
	waited := false
	for {
		evicted, limit, ok := ll.l.admit(lc)
		switch {
		case ok:
			if evicted != nil {
				ll.l.idleClosed.WithLabelValues(limit).Inc()
				evicted.Conn.Close()
			}
			return lc, true
		case limit == "client":
			// Counted before the close: the client sees it after.
			ll.l.refused.WithLabelValues("client").Inc()
			ll.l.warn("client", client)
			resetClose(c)
			return lc, false
		}
		if !waited {
			waited = true
			ll.l.full.Inc()
			ll.l.warn("total", netip.Addr{})
		}
		select {
		case <-ll.l.freed:
		case <-ll.done:
			c.Close()
			return nil, false
		}
	}
}

func (ll *limitListener) Close() error {
	ll.closeOnce.Do(func() { close(ll.done) })
	return ll.Listener.Close()
}

// resetClose closes with a reset: the refused connection leaves nothing
// in TIME_WAIT.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	l       *connLimiter
	client  netip.Addr
	counted atomic.Bool // holds a slot
	idleAt  uint64      // 0: busy; else its place among idle ones (l.mu)
}

func (c *limitedConn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// trackIdle is net/http's ConnState hook of a limited listener: it tells
// the limiter which connections wait between requests.
func trackIdle(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if c, ok := nc.(*limitedConn); ok {
		c.l.setIdle(c, st == http.StateIdle)
	}
}
