package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// What the lab's test servers answer, for tests to compare against.
const (
	InternetHTTPBody = "passerelle-lab internet\n"
	AcademyHTTPBody  = "passerelle-lab academy\n"

	// Domain is the zone served by the internet DNS server.
	Domain = "lab.test."
	// InternetHost and AcademyHost resolve to InternetServer and
	// AcademyServer through the lab DNS server.
	InternetHost = "www." + Domain
	AcademyHost  = "academy." + Domain
)

const (
	dnsTTL          = 60
	serverStartWait = 5 * time.Second
)

// servers runs the lab's in-process servers. Each listener is opened inside
// its namespace and then served from an ordinary goroutine: a socket stays
// in the namespace it was created in, whatever thread later uses it.
type servers struct {
	logger  *slog.Logger
	http    []*http.Server
	dns     []*dns.Server
	packets []net.PacketConn // plain UDP servers (NTP): closing stops them
	wg      sync.WaitGroup
}

// startHTTP serves body on GET / at addr inside namespace nsName.
func (s *servers) startHTTP(nsName, addr, body string) error {
	ln, err := Listen(nsName, "tcp", addr)
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(body))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.http = append(s.http, srv)
	logger := s.logger.With("server", "http", "namespace", nsName, "addr", ln.Addr().String())
	s.wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("lab server stopped", "err", err)
		}
	})
	return nil
}

// startDNS serves the zone on UDP and TCP at addr inside namespace nsName.
// It returns once both servers are ready to answer, so that a test never
// races the server it is about to query.
func (s *servers) startDNS(nsName, addr string, z *dnsZone) error {
	pc, err := ListenPacket(nsName, "udp", addr)
	if err != nil {
		return fmt.Errorf("dns server: %w", err)
	}
	ln, err := Listen(nsName, "tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns server: %w", err)
	}
	// Once a server has started, stop owns its socket; before that, we do.
	if err := s.serveDNS(nsName, &dns.Server{PacketConn: pc, Handler: z, Net: "udp"}); err != nil {
		pc.Close()
		ln.Close()
		return err
	}
	if err := s.serveDNS(nsName, &dns.Server{Listener: ln, Handler: z, Net: "tcp"}); err != nil {
		ln.Close()
		return err
	}
	return nil
}

func (s *servers) serveDNS(nsName string, srv *dns.Server) error {
	started := make(chan struct{})
	failed := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(started) }
	logger := s.logger.With("server", "dns/"+srv.Net, "namespace", nsName)
	s.wg.Go(func() {
		if err := srv.ActivateAndServe(); err != nil {
			failed <- err
			logger.Warn("lab server stopped", "err", err)
		}
	})
	select {
	case <-started:
		s.dns = append(s.dns, srv)
		return nil
	case err := <-failed:
		return fmt.Errorf("dns server (%s): %w", srv.Net, err)
	case <-time.After(serverStartWait):
		return fmt.Errorf("dns server (%s): not started after %v", srv.Net, serverStartWait)
	}
}

// stop shuts every server down, closing their sockets (which otherwise
// would keep the namespaces alive), and waits for their goroutines.
func (s *servers) stop(ctx context.Context) error {
	var errs []error
	for _, srv := range s.http {
		if err := srv.Shutdown(ctx); err != nil {
			// Shutdown waits for idle connections; Close does not.
			errs = append(errs, fmt.Errorf("shut down http server: %w", err))
			srv.Close()
		}
	}
	for _, pc := range s.packets {
		pc.Close()
	}
	for _, srv := range s.dns {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down dns server (%s): %w", srv.Net, err))
		}
	}
	s.http, s.dns = nil, nil

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("wait for lab servers: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// dnsZone is a tiny authoritative server: A records for a few names under
// Domain, NXDOMAIN for every other name.
type dnsZone struct {
	a map[string]netip.Addr // canonical name -> address
}

func newDNSZone(records map[string]netip.Addr) *dnsZone {
	z := &dnsZone{a: make(map[string]netip.Addr, len(records))}
	for name, addr := range records {
		z.a[dns.CanonicalName(name)] = addr
	}
	return z
}

func (z *dnsZone) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: dnsTTL},
		Ns:      "ns." + Domain,
		Mbox:    "hostmaster." + Domain,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  dnsTTL,
	}
}

// ServeDNS implements dns.Handler.
func (z *dnsZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	inZone := dns.IsSubDomain(Domain, name)
	addr, known := z.a[name]
	switch {
	case known && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsTTL},
			A:   net.IP(addr.AsSlice()),
		})
	case name == Domain && q.Qtype == dns.TypeSOA:
		resp.Answer = append(resp.Answer, z.soa())
	case known || name == Domain:
		// The name exists but has no record of this type: NODATA.
		resp.Ns = append(resp.Ns, z.soa())
	default:
		resp.Rcode = dns.RcodeNameError
		if inZone {
			resp.Ns = append(resp.Ns, z.soa())
		}
	}
	if !inZone {
		// Not our zone: we answer NXDOMAIN (the lab's internet knows no
		// other names) but must not claim authority over it.
		resp.Authoritative = false
	}
	_ = w.WriteMsg(resp)
}

// labRecords returns the lab's DNS records.
func labRecords() map[string]netip.Addr {
	return map[string]netip.Addr{
		InternetHost:         internetServerAddr,
		"internet." + Domain: internetServerAddr,
		AcademyHost:          academyServerAddr,
	}
}
