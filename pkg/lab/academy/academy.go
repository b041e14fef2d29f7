// Package academy is the lab's academy datacenter for the tunnel: a
// coordination server (tailscale.com's testcontrol), a DERP relay and a
// STUN server on the academy's public address, a datacenter-side tailscaled
// that routes the academy's private prefix, and an HTTP service on that
// prefix that tells each client the address it saw.
//
// LAB TOOL, NOT FOR PRODUCTION: testcontrol keeps everything in memory,
// approves every advertised route and trusts one shared key. An academy
// runs Headscale (docs/academy-deployment.md).
package academy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"tailscale.com/derp/derpserver"
	"tailscale.com/ipn"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/opt"

	"passerelle/pkg/lab"
)

// Ports of the academy's public services, on lab.AcademyServer.
const (
	ControlPort = 443
	DERPPort    = 8443
	STUNPort    = 3478
)

// Defaults of the datacenter's private side.
var (
	DefaultPrefix  = netip.MustParsePrefix("10.200.0.0/24")
	DefaultService = netip.MustParseAddr("10.200.0.10")
)

// The academy's names, answered by its resolver through the tunnel, and
// the tailnet's MagicDNS suffix (Headscale's base_domain).
var (
	DefaultDomain        = "ac-lab.test"
	DefaultResolver      = netip.MustParseAddrPort("10.200.0.53:53")
	DefaultTailnetDomain = "ts.ac-lab.test"
)

// IntranetName is the one name the academy's resolver knows: it resolves
// to the HTTP service.
func (a *Academy) IntranetName() string { return "intranet." + a.o.Domain }

// ServicePort is the datacenter HTTP service's port.
const ServicePort = 8080 // the lab answers on :80 of every academy address

// Options describe the lab academy.
type Options struct {
	Lab        *lab.Lab
	Tailscaled string // the program for the datacenter's router
	Dir        string // state, CA, logs (a test's temporary directory)
	Logf       logger.Logf
	Prefix     netip.Prefix // the academy's private prefix; zero: DefaultPrefix
	Service    netip.Addr   // the HTTP service's address in it; zero: DefaultService
	// Domain, Resolver, TailnetDomain: zero means DefaultDomain,
	// DefaultResolver, DefaultTailnetDomain.
	Domain        string
	Resolver      netip.AddrPort
	TailnetDomain string
}

// Academy is a running lab academy.
type Academy struct {
	o       Options
	ns      string
	addr    netip.Addr
	authKey string
	caFile  string
	control *testcontrol.Server

	servers []*http.Server
	closers []func()
	wg      sync.WaitGroup
	stop    chan struct{}

	mu   sync.Mutex
	seen []netip.Addr // client addresses the HTTP service saw
	dc   *exec.Cmd
}

// Start brings the academy up in the lab's academy namespace.
func Start(o Options) (_ *Academy, err error) {
	if o.Prefix == (netip.Prefix{}) {
		o.Prefix = DefaultPrefix
	}
	if !o.Service.IsValid() {
		o.Service = DefaultService
	}
	if o.Logf == nil {
		o.Logf = logger.Discard
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if !o.Resolver.IsValid() {
		o.Resolver = DefaultResolver
	}
	if o.TailnetDomain == "" {
		o.TailnetDomain = DefaultTailnetDomain
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	a := &Academy{o: o, ns: o.Lab.Namespace(lab.RoleAcademy), addr: o.Lab.AcademyServer(), stop: make(chan struct{})}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	keyBytes := make([]byte, 16)
	if _, err := rand.Read(keyBytes); err != nil {
		return nil, err
	}
	a.authKey = "tskey-lab-" + hex.EncodeToString(keyBytes)
	cert, err := a.tlsCert()
	if err != nil {
		return nil, err
	}
	derpMap, err := a.startDERPAndSTUN(cert)
	if err != nil {
		return nil, err
	}
	a.control = &testcontrol.Server{
		DERPMap:          derpMap,
		RequireAuthKey:   a.authKey,
		AllNodesSameUser: true,
		MagicDNSDomain:   o.TailnetDomain,
		ExplicitBaseURL:  a.ControlURL(),
		Logf:             o.Logf,
	}
	if err := a.serveTLS(ControlPort, cert, a.control); err != nil {
		return nil, fmt.Errorf("control server: %w", err)
	}
	a.wg.Go(a.approveRoutes)
	if err := a.startService(); err != nil {
		return nil, err
	}
	if err := a.startResolver(); err != nil {
		return nil, err
	}
	return a, nil
}

// ControlURL is the coordination server's URL, for tunnel.control_url.
func (a *Academy) ControlURL() string {
	return fmt.Sprintf("https://%s:%d", a.addr, ControlPort)
}

// AuthKey is the pre-authorised key every node must present.
func (a *Academy) AuthKey() string { return a.authKey }

// CAFile is the PEM file of the lab CA that signed the control server's
// certificate: tailscaled trusts it through SSL_CERT_FILE.
func (a *Academy) CAFile() string { return a.caFile }

// Prefix is the academy's private prefix (tunnel.academy_prefixes).
func (a *Academy) Prefix() netip.Prefix { return a.o.Prefix }

// ServiceURL is the datacenter HTTP service, reachable only through the
// tunnel.
func (a *Academy) ServiceURL() string { return fmt.Sprintf("http://%s:%d/", a.o.Service, ServicePort) }

// Control is the coordination server (routes, nodes).
func (a *Academy) Control() *testcontrol.Server { return a.control }

// Seen returns the client addresses the HTTP service has seen, in order.
func (a *Academy) Seen() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

// tlsCert makes a lab CA and a certificate for the academy's address; the
// CA goes to Dir/ca.pem.
func (a *Academy) tlsCert() (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "passerelle lab academy CA (not for production)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: a.addr.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{a.addr.AsSlice()}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	a.caFile = filepath.Join(a.o.Dir, "ca.pem")
	if err := os.WriteFile(a.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{srvDER, caDER}, PrivateKey: srvKey}, nil
}

// serveTLS serves h over TLS on the academy's address.
func (a *Academy) serveTLS(port int, cert tls.Certificate, h http.Handler) error {
	ln, err := lab.Listen(a.ns, "tcp4", fmt.Sprintf("%s:%d", a.addr, port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		// DERP and control's Noise upgrade take over the connection:
		// no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     logger.StdLogger(a.o.Logf),
	}
	a.servers = append(a.servers, srv)
	a.wg.Go(func() { _ = srv.ServeTLS(ln, "", "") })
	return nil
}

// startDERPAndSTUN runs the relay (TLS, the client skips verification:
// InsecureForTests) and STUN, and returns the DERP map of the tailnet.
func (a *Academy) startDERPAndSTUN(cert tls.Certificate) (*tailcfg.DERPMap, error) {
	d := derpserver.New(key.NewNode(), a.o.Logf)
	a.closers = append(a.closers, func() { d.Close() })
	if err := a.serveTLS(DERPPort, cert, derpserver.Handler(d)); err != nil {
		return nil, fmt.Errorf("derp: %w", err)
	}
	pc, err := lab.ListenPacket(a.ns, "udp4", fmt.Sprintf("%s:%d", a.addr, STUNPort))
	if err != nil {
		return nil, fmt.Errorf("stun: %w", err)
	}
	a.closers = append(a.closers, func() { pc.Close() })
	a.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			tx, err := stun.ParseBindingRequest(buf[:n])
			if err != nil {
				continue
			}
			ua := from.(*net.UDPAddr)
			_, _ = pc.WriteTo(stun.Response(tx, ua.AddrPort()), from)
		}
	})
	ip := a.addr.String()
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {RegionID: 1, RegionCode: "academy", RegionName: "Lab academy", Nodes: []*tailcfg.DERPNode{{
			Name: "1a", RegionID: 1, HostName: ip, IPv4: ip, IPv6: "none",
			DERPPort: DERPPort, STUNPort: STUNPort, STUNTestIP: ip, InsecureForTests: true,
		}}},
	}}, nil
}

// approveRoutes plays Headscale's auto-approvers: every route a node
// advertises is approved (testcontrol only routes what SetSubnetRoutes
// approved).
func (a *Academy) approveRoutes() {
	approved := map[key.NodePublic][]netip.Prefix{}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		for _, n := range a.control.AllNodes() {
			if !n.Hostinfo.Valid() {
				continue
			}
			want := n.Hostinfo.RoutableIPs().AsSlice()
			if slices.Equal(approved[n.Key], want) {
				continue
			}
			approved[n.Key] = want
			a.control.SetSubnetRoutes(n.Key, want)
			a.o.Logf("lab academy: approved routes %v of %s", want, n.Hostinfo.Hostname())
		}
	}
}

// Resolver is the academy's resolver (tunnel.academy_resolvers).
func (a *Academy) Resolver() netip.AddrPort { return a.o.Resolver }

// Domain is the academy's domain (tunnel.academy_domains).
func (a *Academy) Domain() string { return a.o.Domain }

// TailnetDomain is the tailnet's MagicDNS suffix (tunnel.tailnet_domain).
func (a *Academy) TailnetDomain() string { return a.o.TailnetDomain }

// addLoopback puts an address on the academy namespace's lo.
func (a *Academy) addLoopback(ip netip.Addr) error {
	return lab.RunInNamespace(a.ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
		return nil
	})
}

// startResolver serves the academy's domain on the resolver address (UDP):
// IntranetName is the HTTP service, any other name of the domain does not
// exist, names elsewhere are refused.
func (a *Academy) startResolver() error {
	if err := a.addLoopback(a.o.Resolver.Addr()); err != nil {
		return fmt.Errorf("academy resolver address: %w", err)
	}
	pc, err := lab.ListenPacket(a.ns, "udp4", a.o.Resolver.String())
	if err != nil {
		return fmt.Errorf("academy resolver: %w", err)
	}
	zone := dns.Fqdn(a.o.Domain)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		switch {
		case len(q.Question) != 1 || !dns.IsSubDomain(zone, q.Question[0].Name):
			m.Rcode = dns.RcodeRefused
		case strings.EqualFold(q.Question[0].Name, dns.Fqdn(a.IntranetName())):
			if q.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   a.o.Service.AsSlice(),
				})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	a.closers = append(a.closers, func() { _ = srv.Shutdown() })
	started, errc := make(chan struct{}), make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(started) }
	a.wg.Go(func() { errc <- srv.ActivateAndServe() })
	select {
	case <-started:
		return nil
	case err := <-errc:
		return fmt.Errorf("academy resolver: %w", err)
	}
}

// startService puts the service address on the academy's lo and serves
// HTTP there: the answer is the client address the service saw.
func (a *Academy) startService() error {
	err := lab.RunInNamespace(a.ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.o.Service.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("academy service address: %w", err)
	}
	ln, err := lab.Listen(a.ns, "tcp4", fmt.Sprintf("%s:%d", a.o.Service, ServicePort))
	if err != nil {
		return fmt.Errorf("academy service: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		a.mu.Lock()
		a.seen = append(a.seen, ap.Addr())
		a.mu.Unlock()
		fmt.Fprintf(w, "academy service: you are %s\n", ap.Addr())
	})
	mux.HandleFunc("GET /data", func(w http.ResponseWriter, r *http.Request) {
		// A bulk download, for throughput measurements: ?mb=N.
		n := 10
		fmt.Sscan(r.URL.Query().Get("mb"), &n)
		buf := make([]byte, 1<<20)
		for range n {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.servers = append(a.servers, srv)
	a.wg.Go(func() { _ = srv.Serve(ln) })
	return nil
}

// StartRouter starts the datacenter's tailscaled in the academy namespace:
// it routes the academy prefix, accepts the schools' routes (the replies
// go back through the tunnel) and keeps the client addresses (no SNAT).
func (a *Academy) StartRouter() error {
	dir := filepath.Join(a.o.Dir, "dc")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "authkey")
	if err := os.WriteFile(keyFile, []byte(a.authKey+"\n"), 0o600); err != nil {
		return err
	}
	url, host, ak, off := a.ControlURL(), "academy-dc", "file:"+keyFile, "off"
	conf := ipn.ConfigVAlpha{
		Version: "alpha0", ServerURL: &url, AuthKey: &ak, Hostname: &host, Enabled: opt.NewBool(true),
		AcceptDNS: opt.NewBool(false), AcceptRoutes: opt.NewBool(true), AdvertiseRoutes: []netip.Prefix{a.o.Prefix},
		DisableSNAT: opt.NewBool(true), NetfilterMode: &off,
	}
	data, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	confFile := filepath.Join(dir, "tailscaled.json")
	if err := os.WriteFile(confFile, data, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(a.o.Tailscaled, "--config="+confFile, "--statedir="+dir, "--state="+filepath.Join(dir, "state"),
		"--socket="+filepath.Join(dir, "tailscaled.sock"), "--tun=tailscale0", "--port=41641", "--no-logs-no-support",
		// Its log is the lab's only view of the academy's side of a path
		// change (call-me-maybe, endpoint deletions): keep the details.
		"--verbose=1")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+a.caFile, "TS_LOGS_DIR="+filepath.Join(dir, "logs"))
	logf, err := os.Create(filepath.Join(dir, "tailscaled.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartCommand(a.ns, cmd); err != nil {
		logf.Close()
		return fmt.Errorf("datacenter tailscaled: %w", err)
	}
	a.mu.Lock()
	a.dc = cmd
	a.mu.Unlock()
	a.wg.Go(func() { _ = cmd.Wait(); logf.Close() })
	return nil
}

// RouterSocket is the datacenter tailscaled's LocalAPI socket.
func (a *Academy) RouterSocket() string { return filepath.Join(a.o.Dir, "dc", "tailscaled.sock") }

// Close stops everything the academy started.
func (a *Academy) Close() {
	select {
	case <-a.stop:
		return
	default:
		close(a.stop)
	}
	a.mu.Lock()
	if a.dc != nil && a.dc.Process != nil {
		_ = a.dc.Process.Signal(syscall.SIGTERM)
		p := a.dc.Process
		time.AfterFunc(3*time.Second, func() { _ = p.Kill() })
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range a.servers {
		_ = s.Shutdown(ctx)
		_ = s.Close()
	}
	for _, c := range a.closers {
		c()
	}
	a.wg.Wait()
}
