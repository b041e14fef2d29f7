package dnsfilter

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DNS over TCP costs the box a file descriptor and a goroutine per
// connection, from the moment it is accepted until the client sends a
// query or the read timeout ends it. One client holding thousands of them
// used to exhaust the process's file limit: every socket the resolver
// opens towards upstreams then failed, and every zone got SERVFAIL, over
// UDP as well (issue 12). Connections are therefore counted, in all and
// per client address, and those over either budget are accepted and
// closed at once (with a reset, so they hold nothing in TIME_WAIT). When
// the total budget is full, a client holding fewer connections than the
// biggest holder still gets one: the biggest holder's oldest goes, so
// that many addresses filling the budget do not lock everyone else out.
const (
	// maxTCPConns bounds the DNS-over-TCP connections of all zones. TCP
	// is the fallback of truncated answers and the choice of a few
	// clients: a school's hundreds of devices need a few dozen at once.
	// It is lowered to a quarter of the file limit when that is small,
	// so that upstream sockets, lists and leases always find descriptors.
	maxTCPConns = 512
	// maxTCPPerClient bounds one address's connections: a resolver
	// library keeps one or two open, a browser a handful.
	maxTCPPerClient = 16
	// tcpRefusedLogEvery: refusals are logged at most this often per
	// reason, with the number refused since the last line.
	tcpRefusedLogEvery = 10 * time.Second
)

// tcpLimiter holds the connection counts shared by every zone's listener.
type tcpLimiter struct {
	log       *slog.Logger
	now       func() time.Time
	max       int
	perClient int
	refused   *prometheus.CounterVec // zone, reason
	open      prometheus.Gauge

	mu       sync.Mutex
	total    int
	byClient map[netip.Addr][]*limitedConn // oldest first

	// Rate-limited logging: refusals since the last line, per reason.
	logMu    sync.Mutex
	lastLog  map[string]time.Time
	sinceLog map[string]int
}

func newTCPLimiter(log *slog.Logger, now func() time.Time, refused *prometheus.CounterVec, open prometheus.Gauge) *tcpLimiter {
	max := maxTCPConns
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur/4 < uint64(max) {
		max = int(max64(rl.Cur/4, 16))
	}
	return &tcpLimiter{log: log, now: now, max: max, perClient: maxTCPPerClient, refused: refused, open: open,
		byClient: map[netip.Addr][]*limitedConn{}, lastLog: map[string]time.Time{}, sinceLog: map[string]int{}}
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// acquire takes a connection slot for c; reason says which budget
// refused it. With the total budget full, the oldest connection of the
// biggest holder is returned as evicted (to close) if that holder has at
// least two more than c's client.
func (l *tcpLimiter) acquire(c *limitedConn) (reason string, evicted *limitedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mine := len(l.byClient[c.client])
	if mine >= l.perClient {
		return "client", nil, false
	}
	if l.total >= l.max {
		var biggest netip.Addr
		most := 0
		for a, cs := range l.byClient {
			if len(cs) > most {
				biggest, most = a, len(cs)
			}
		}
		if most < mine+2 {
			return "total", nil, false
		}
		evicted = l.byClient[biggest][0]
		evicted.closed.Store(true) // its Close must not release again
		l.removeLocked(evicted)
	}
	l.total++
	l.byClient[c.client] = append(l.byClient[c.client], c)
	l.open.Set(float64(l.total))
	return "", evicted, true
}

func (l *tcpLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(c)
}

func (l *tcpLimiter) removeLocked(c *limitedConn) {
	cs := l.byClient[c.client]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i:i], cs[i+1:]...)
			l.total--
			break
		}
	}
	if len(cs) > 0 {
		l.byClient[c.client] = cs
	} else {
		delete(l.byClient, c.client)
	}
	l.open.Set(float64(l.total))
}

func (l *tcpLimiter) counts() (total int, clients int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, len(l.byClient)
}

// refusedConn counts a refusal and logs it, at most once per
// tcpRefusedLogEvery and reason.
func (l *tcpLimiter) refusedConn(zone, reason string, client netip.Addr) {
	l.refused.WithLabelValues(zone, reason).Inc()
	now := l.now()
	l.logMu.Lock()
	l.sinceLog[reason]++
	if now.Sub(l.lastLog[reason]) < tcpRefusedLogEvery {
		l.logMu.Unlock()
		return
	}
	n := l.sinceLog[reason]
	l.sinceLog[reason] = 0
	l.lastLog[reason] = now
	l.logMu.Unlock()
	limit := l.max
	if reason == "client" {
		limit = l.perClient
	}
	l.log.Warn("DNS over TCP: connections refused over the limit", "event", "dns-tcp-refused", "zone", zone, "reason", reason,
		"limit", limit, "client", client.String(), "refused", n, "per", tcpRefusedLogEvery.String())
}

// wrap returns zone's listener, accepting within the budgets.
func (l *tcpLimiter) wrap(ln net.Listener, zone string) net.Listener {
	return &limitListener{Listener: ln, l: l, zone: zone}
}

type limitListener struct {
	net.Listener
	l    *tcpLimiter
	zone string
}

// Accept returns the next connection within the budgets; those over
// them are closed here, before any byte is read. When the process is
// out of descriptors (EMFILE, ENFILE) it waits a little rather than spin:
// miekg/dns retries temporary errors at once.
func (ll *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				ll.l.refusedConn(ll.zone, "descriptors", netip.Addr{})
				time.Sleep(delay)
				continue
			}
			return nil, err
		}
		delay = 0
		client := netip.Addr{}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(a.IP)
			client = ip.Unmap()
		}
		lc := &limitedConn{Conn: c, l: ll.l, client: client, zone: ll.zone}
		reason, evicted, ok := ll.l.acquire(lc)
		if !ok {
			resetClose(c)
			ll.l.refusedConn(ll.zone, reason, client)
			continue
		}
		if evicted != nil {
			resetClose(evicted.Conn)
			ll.l.refusedConn(evicted.zone, "evicted", evicted.client)
		}
		return lc, nil
	}
}

// resetClose closes with a reset: nothing left in TIME_WAIT.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// limitedConn gives its slot back when closed (once).
type limitedConn struct {
	net.Conn
	l      *tcpLimiter
	client netip.Addr
	zone   string
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return c.Conn.Close()
}
