package manage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits bound what one client can take of the box through the
// management API's listener (and the update listener of the lab): any
// node of the tailnet can open connections before WhoIs refuses it, and
// a box in a school cupboard has little memory and few descriptors to
// spare. The zero value of a field is its default (DefaultLimits).
type Limits struct {
	// HeaderTimeout bounds the TLS handshake and a request's line and
	// headers: a client sending them byte by byte (slowloris) is cut.
	HeaderTimeout time.Duration
	// ReadTimeout bounds a whole request whose body is not read at a
	// Pace (GET calls, unknown paths); bodies read at a Pace get their
	// own deadlines, so it never cuts an update upload.
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of an answer: a client that does
	// not read it is cut. It counts from the end of the request's
	// headers, so handlers that work long before answering (a push with
	// wait, an update) give their answer its own deadline (Answer).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers (431 above).
	MaxHeaderBytes int
	// MaxConns is the number of connections served at once; more wait
	// in the kernel's backlog, so a flood cannot take every descriptor
	// or goroutine of the box.
	MaxConns int
}

// DefaultLimits are the management API's limits. The NOC's calls are
// one at a time per box (passerellectl), with small headers; 32
// connections leave room for a rollout, a status sweep and a technician
// at once.
func DefaultLimits() Limits {
	return Limits{
		HeaderTimeout:  10 * time.Second,
		ReadTimeout:    time.Minute,
		WriteTimeout:   time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		MaxConns:       32,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = d.HeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	return l
}

// Server returns an HTTP server for h within l; its errors (TLS
// handshakes of scanners, cut connections) are logged at debug level.
// Serve it on Listen's listener.
func (l Limits) Server(h http.Handler, log *slog.Logger) *http.Server {
	l = l.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.HeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Listen caps ln at l.MaxConns connections at once. Wrap the result in
// TLS, not the other way round: net/http then bounds each handshake by
// HeaderTimeout.
func (l Limits) Listen(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, l.withDefaults().MaxConns)
}

// Pace is how fast a request body must arrive: a school's link may be
// slow, but a client that sends a body slower than any link (a slowloris
// on the body) must not hold a connection, nor the update slot, for
// ever. The zero value of a field is its default.
type Pace struct {
	// Grace is the time a body has before MinRate applies (TLS
	// records, TCP's slow start, the NOC opening the image).
	Grace time.Duration
	// MinRate is the bytes per second a body must average since it
	// began, once Grace is over.
	MinRate int64
	// Stall is the longest wait for the next bytes, whatever arrived
	// before.
	Stall time.Duration
}

// Default pace: 4 KiB/s is 32 kbit/s, below what any school link
// carries even when shared; a 64 MiB update at that rate takes 4.5 hours,
// a full bundle 6 minutes.
const (
	DefaultGrace   = 30 * time.Second
	DefaultMinRate = 4 << 10
	DefaultStall   = 2 * time.Minute
)

func (p Pace) withDefaults() Pace {
	if p.Grace <= 0 {
		p.Grace = DefaultGrace
	}
	if p.MinRate <= 0 {
		p.MinRate = DefaultMinRate
	}
	if p.Stall <= 0 {
		p.Stall = DefaultStall
	}
	return p
}

// Reader returns r (a request's body) read at p: before each read the
// connection's read deadline is set to the earlier of the stall deadline
// and the one MinRate gives the bytes received so far. A client too slow
// ends the read with a timeout error.
func (p Pace) Reader(w http.ResponseWriter, r io.Reader) io.Reader {
	p = p.withDefaults()
	return &pacedReader{r: r, p: p, rc: http.NewResponseController(w), start: time.Now()}
}

type pacedReader struct {
	r     io.Reader
	p     Pace
	rc    *http.ResponseController
	start time.Time
	n     int64
	eof   bool
}

func (pr *pacedReader) Read(b []byte) (int, error) {
	if pr.eof {
		// The body is in, and net/http now reads the connection in
		// the background (without a deadline) to notice a client
		// gone, cancelling the request's context when that read
		// fails: a deadline set now would cancel a push waiting for
		// its verdict, or an update being read back.
		return pr.r.Read(b)
	}
	now := time.Now()
	due := pr.start.Add(pr.p.Grace + time.Duration(float64(pr.n)/float64(pr.p.MinRate)*float64(time.Second)))
	if stall := now.Add(pr.p.Stall); stall.Before(due) {
		due = stall
	}
	_ = pr.rc.SetReadDeadline(due)
	n, err := pr.r.Read(b)
	pr.n += int64(n)
	pr.eof = err == io.EOF
	return n, err
}

// Body returns r's body limited to max bytes and read at p. A body over
// max ends with a *http.MaxBytesError (tooLarge) and the connection is
// closed after the answer. A declared Content-Length over max is an
// error at once, before anything is read.
func (p Pace) Body(w http.ResponseWriter, r *http.Request, max int64) (io.Reader, error) {
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	return http.MaxBytesReader(w, io.NopCloser(p.Reader(w, r.Body)), max), nil
}

// tooLarge says whether err is a body over its limit (Pace.Body), and
// the limit.
func tooLarge(err error) (int64, bool) {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return mb.Limit, true
	}
	return 0, false
}

// tooLargeDetail is the reason's detail for a body over its limit.
func tooLargeDetail(limit int64, what string) string {
	return fmt.Sprintf("the request's body is more than the %d bytes a %s may have", limit, what)
}

// AnswerTimeout bounds the writing of an answer from when the handler
// starts it (Answer).
const AnswerTimeout = time.Minute

// Answer gives the answer a handler is about to write its own write
// deadline, AnswerTimeout from now: the work before it (an upload, a
// confirm window) may have outlasted the server's WriteTimeout, which
// counts from the end of the request's headers.
func Answer(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(AnswerTimeout))
}
