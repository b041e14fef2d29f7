package telemetry

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// server serves /metrics on the addresses of the allowed zones and on the
// tunnel interface, and nowhere else: it never listens on a wildcard
// address of the uplinks (the firewall admits the port only from those
// zones and the tunnel as well). An address or interface not there yet
// (hotplug, tailscaled starting) is retried every second.
type server struct {
	t       *Telemetry
	handler http.Handler
	want    map[string]func() (net.Listener, error)
	live    map[string]*http.Server
	lim     serveLimits
}

// serveLimits bound what a client of /metrics can take of the box: it
// listens in the schools' zones, where any machine may open connections
// (a scraper needs one at a time, and answers of a few hundred KiB).
type serveLimits struct {
	header, read, write, idle time.Duration
	maxHeader                 int
	maxConns                  int // per listener; more wait in the kernel's backlog
}

func defaultServeLimits() serveLimits {
	return serveLimits{header: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second,
		idle: time.Minute, maxHeader: 8 << 10, maxConns: 16}
}

func newServer(t *Telemetry) *server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return &server{t: t, handler: mux, live: map[string]*http.Server{}, lim: defaultServeLimits()}
}

// serve serves /metrics on ln within s's limits until srv is closed.
func (s *server) serve(ln net.Listener) *http.Server {
	l := s.lim
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: l.header, ReadTimeout: l.read, WriteTimeout: l.write,
		IdleTimeout: l.idle, MaxHeaderBytes: l.maxHeader,
		ErrorLog: slog.NewLogLogger(s.t.log.Handler(), slog.LevelDebug)}
	go srv.Serve(netutil.LimitListener(ln, l.maxConns))
	return srv
}

// set replaces the listeners with those of a plan.
func (s *server) set(addrs []netip.AddrPort, tunnelPort int) {
	want := map[string]func() (net.Listener, error){}
	for _, a := range addrs {
		a := a
		want[a.String()] = func() (net.Listener, error) {
			return net.Listen("tcp4", a.String())
		}
	}
	if tunnelPort > 0 {
		// The tunnel's own address, once tailscaled has set it: a
		// wildcard socket bound to the device would clash with the zone
		// addresses' sockets of the same port.
		want[TunnelInterface+":"+strconv.Itoa(tunnelPort)] = func() (net.Listener, error) {
			ifc, err := net.InterfaceByName(TunnelInterface)
			if err != nil {
				return nil, err
			}
			addrs, err := ifc.Addrs()
			if err != nil {
				return nil, err
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					return net.Listen("tcp4", net.JoinHostPort(n.IP.String(), strconv.Itoa(tunnelPort)))
				}
			}
			return nil, errors.New("no IPv4 address on " + TunnelInterface + " yet")
		}
	}
	for k, srv := range s.live {
		if _, ok := want[k]; !ok {
			srv.Close()
			delete(s.live, k)
		}
	}
	s.want = want
	s.retry()
}

// retry opens the listeners still missing.
func (s *server) retry() {
	for k, listen := range s.want {
		if _, ok := s.live[k]; ok {
			continue
		}
		ln, err := listen()
		if err != nil {
			s.t.log.Debug("telemetry: /metrics not listening yet", "at", k, "err", err)
			continue
		}
		s.live[k] = s.serve(ln)
		s.t.log.Info("telemetry: serving /metrics", "event", "metrics-serving", "at", k)
	}
}

func (s *server) close() {
	for k, srv := range s.live {
		srv.Close()
		delete(s.live, k)
	}
}
