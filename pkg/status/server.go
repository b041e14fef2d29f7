package status

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/config"
	"passerelle/pkg/eventlog"
)

//go:embed templates/*
var templateFS embed.FS

// Options are the page's collaborators. Source is required.
type Options struct {
	Source Source
	Log    *slog.Logger
	Now    func() time.Time
	// StateDir keeps the certificate (/perm/status); "" keeps it in
	// memory only.
	StateDir string
	// EventLogDir is the persistent log the page shows; "" shows none.
	EventLogDir string
	// Lookup resolves a name as a zone's clients would (the DNS
	// diagnostic); nil asks the box's DNS server on the zone's address.
	Lookup func(ctx context.Context, zone, name string) ([]netip.Addr, error)
	// HTTPClient runs the HTTP check; nil: a client pinned to the
	// uplink the technician chose (through Uplinks).
	HTTPClient *http.Client
	// Restarter restarts one service (the supervisor); nil offers no
	// restart.
	Restarter Restarter
	// Generations confirms and rolls back the NOC's configurations; nil
	// when the box is not managed.
	Generations Generations
	// Uplinks pins the diagnostics (HTTP check, ping, traceroute) to the
	// chosen uplink; nil: the box's routing decides (tests).
	Uplinks Pinner
	// Reboot restarts the box (the daemon's orderly shutdown); nil
	// offers no reboot.
	Reboot func() error
	// Metrics registers the listeners' connection metrics; nil keeps
	// them unregistered.
	Metrics prometheus.Registerer
	// BlockPageConns bounds each plain HTTP listener (the block page on
	// the pupils' zones, the redirect on the status zones); zero fields
	// are the defaults (DefaultBlockPageMax, DefaultBlockPagePerClient).
	BlockPageConns ConnLimits
	// StatusPageConns bounds each HTTPS listener (DefaultStatusPageMax,
	// DefaultStatusPagePerClient).
	StatusPageConns ConnLimits
}

// Server is the status page, the block page and the control socket's
// handler.
type Server struct {
	o        Options
	log      *slog.Logger
	now      func() time.Time
	tmpl     *template.Template
	sessions *sessions
	logins   *limiter
	diags    *limiter
	history  *history
	icmpBusy chan struct{} // one ping or traceroute at a time
	conns    *connMetrics
	timeouts httpTimeouts

	certOnce sync.Once
	cert     *boxcert.Holder
	certErr  error

	mu        sync.Mutex
	listeners map[string]*listener // by "kind addr:port"
}

// New returns the page; it listens once Run runs.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		o: o, log: o.Log, now: o.Now,
		sessions: newSessions(o.Now),
		// Login: 5 tries at once per address, then one a minute; 30 a
		// minute from every address together (bcrypt is slow on purpose).
		logins: newLimiter(o.Now, 5, time.Minute, 30, 2*time.Second),
		// Diagnostics: 10 at once, then one every 6 s.
		diags: newLimiter(o.Now, 10, 6*time.Second, 20, 3*time.Second),
		// The chart's 24 hours: a sample a minute.
		history:   newHistory(24 * 60),
		icmpBusy:  make(chan struct{}, 1),
		listeners: map[string]*listener{},
		conns:     newConnMetrics(o.Metrics),
		timeouts:  defaultHTTPTimeouts(),
	}
	s.tmpl = template.Must(template.New("").Funcs(s.funcs()).ParseFS(templateFS, "templates/*.html"))
	return s
}

// holder is the box's certificate holder, opened at first call: the
// NOC's pushed certificate if a valid one is kept, else the one made at
// first boot.
func (s *Server) holder() (*boxcert.Holder, error) {
	s.certOnce.Do(func() {
		host := ""
		if c := s.o.Source.Config(); c != nil {
			host = c.Identity.Hostname
		}
		var aside error
		s.cert, aside, s.certErr = boxcert.Open(s.o.StateDir, host, s.now())
		if aside != nil {
			s.log.Warn("the NOC's certificate is set aside: the first-boot certificate is served", "event", "status-cert-set-aside", "err", aside)
		}
	})
	return s.cert, s.certErr
}

// Certificate returns the certificate served now.
func (s *Server) Certificate() (tls.Certificate, error) {
	h, err := s.holder()
	if err != nil {
		return tls.Certificate{}, err
	}
	return h.Current(), nil
}

// getCertificate serves the current certificate on every handshake, so a
// certificate the NOC pushes is served at once.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	h, err := s.holder()
	if err != nil {
		return nil, err
	}
	return h.GetCertificate(hello)
}

// InstallCertificate validates and installs a certificate the NOC pushed
// (the management API, after checking the NOC's signature): stored on
// the state directory and served by the page and the management API
// from the next handshake. It returns the new fingerprint; a refusal is
// a *boxcert.RefusedError and changes nothing.
func (s *Server) InstallCertificate(certPEM, keyPEM []byte) (string, error) {
	h, err := s.holder()
	if err != nil {
		return "", err
	}
	old := boxcert.Fingerprint(h.Current())
	c, err := h.Install(certPEM, keyPEM, s.now())
	if err != nil {
		return "", err
	}
	fp := boxcert.Fingerprint(c)
	s.log.Info("the NOC's certificate installed", "event", "status-cert-installed", "fingerprint", fp, "previous", old, "not_after", c.Leaf.NotAfter)
	return fp, nil
}

// Fingerprint is the SHA-256 fingerprint of the certificate served now.
func (s *Server) Fingerprint() string {
	c, err := s.Certificate()
	if err != nil {
		return ""
	}
	return boxcert.Fingerprint(c)
}

// CertificateFromNOC says whether the certificate served now is one the
// NOC pushed (else the box made it at first boot).
func (s *Server) CertificateFromNOC() bool {
	h, err := s.holder()
	return err == nil && h.Pushed()
}

// Screen is the first screen, with the certificate's fingerprint.
func (s *Server) Screen() Screen {
	sc := BuildScreen(s.o.Source, s.lang(), s.now())
	sc.Fingerprint = s.Fingerprint()
	sc.CertFromNOC = s.CertificateFromNOC()
	return sc
}

func (s *Server) cfg() *config.Config { return s.o.Source.Config() }

func (s *Server) lang() string {
	if c := s.cfg(); c != nil {
		return c.StatusPage.Language
	}
	return "fr"
}

// listener is one socket of the page.
type listener struct {
	kind  string // "https", "http"
	zone  string
	addr  string
	srv   *http.Server
	conns *connLimiter
}

// Run serves the page on the addresses the running configuration says,
// following configuration changes, until ctx ends. Sockets that cannot be
// bound yet (the zone's address is not up) are retried every 2 s.
func (s *Server) Run(ctx context.Context) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	sample := time.NewTicker(time.Minute)
	defer sample.Stop()
	s.reconcile()
	s.history.add(s.now(), s.o.Source.Uplinks())
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for k, l := range s.listeners {
				if l.srv != nil {
					l.srv.Close()
				}
				delete(s.listeners, k)
			}
			s.mu.Unlock()
			return nil
		case <-tick.C:
			s.reconcile()
		case <-sample.C:
			s.history.add(s.now(), s.o.Source.Uplinks())
		}
	}
}

// wanted is the set of sockets a configuration asks for: HTTPS on the
// status zones' addresses; plain HTTP on the status zones (a redirect to
// HTTPS) and on the zones whose profile answers with the block page.
func wanted(c *config.Config) map[string]listener {
	out := map[string]listener{}
	if c == nil || !c.StatusPage.Enabled {
		return out
	}
	sp := c.StatusPage
	blockPage := map[string]bool{}
	for _, p := range c.DNS.Profiles {
		if p.BlockResponse == config.BlockBlockPage {
			blockPage[p.Name] = true
		}
	}
	for _, z := range c.Zones {
		if !z.Address.IsValid() {
			continue
		}
		status := slices.Contains(sp.Zones, z.Name)
		if status {
			a := net.JoinHostPort(z.Address.String(), strconv.Itoa(sp.HTTPSPort))
			out["https "+a] = listener{kind: "https", zone: z.Name, addr: a}
		}
		if status || blockPage[z.DNSProfile] {
			a := net.JoinHostPort(z.Address.String(), strconv.Itoa(sp.Port))
			out["http "+a] = listener{kind: "http", zone: z.Name, addr: a}
		}
	}
	return out
}

func (s *Server) reconcile() {
	c := s.cfg()
	if c != nil {
		s.sessions.setIdle(c.StatusPage.SessionTimeout.D())
	}
	want := wanted(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.listeners {
		if w, ok := want[k]; !ok || w.zone != l.zone || l.srv == nil {
			if l.srv != nil {
				l.srv.Close()
			}
			delete(s.listeners, k)
		}
	}
	for k, w := range want {
		if _, ok := s.listeners[k]; ok {
			continue
		}
		l := w
		if err := s.listen(&l); err != nil {
			continue // retried at the next tick
		}
		s.listeners[k] = &l
	}
}

func (s *Server) listen(l *listener) error {
	ln, err := net.Listen("tcp4", l.addr)
	if err != nil {
		return err
	}
	if err := s.serve(ln, l); err != nil {
		ln.Close()
		return err
	}
	s.log.Info("status page serving", "event", "status-serving", "kind", l.kind, "zone", l.zone, "at", l.addr)
	return nil
}

// httpTimeouts bound each request of the page's listeners: a client
// sending its headers byte by byte (slowloris) is cut after header, one
// keeping a connection without a request after idle.
type httpTimeouts struct {
	header, read, write, idle time.Duration
}

func defaultHTTPTimeouts() httpTimeouts {
	return httpTimeouts{header: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: 60 * time.Second}
}

// serve serves l's kind on ln within its connection limits, until l.srv
// is closed.
func (s *Server) serve(ln net.Listener, l *listener) error {
	t := s.timeouts
	srv := &http.Server{ReadHeaderTimeout: t.header, ReadTimeout: t.read, WriteTimeout: t.write, IdleTimeout: t.idle, MaxHeaderBytes: 16 << 10,
		ConnState: trackIdle, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	lim := s.o.BlockPageConns
	if l.kind == "https" {
		lim = s.o.StatusPageConns
	}
	// The limits wrap the TCP listener, TLS goes on top: a slot is
	// taken before the handshake, which the header timeout bounds.
	l.conns = newConnLimiter(lim, l.kind, l.zone, s.conns, s.log, s.now)
	ln = l.conns.listener(ln)
	switch l.kind {
	case "https":
		if _, err := s.Certificate(); err != nil {
			s.log.Error("status page: no certificate", "err", err)
			return err
		}
		srv.Handler = s.Handler()
		srv.TLSConfig = &tls.Config{GetCertificate: s.getCertificate, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	default:
		srv.Handler = s.PlainHandler(l.zone)
	}
	l.srv = srv
	go srv.Serve(ln)
	return nil
}

// PlainHandler is the plain HTTP side of a zone: the block page for any
// other host name in a zone whose profile uses it; on a status zone, a
// redirect of the box's own address to HTTPS.
func (s *Server) PlainHandler(zone string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		// The block page carries its own few style rules: nothing else
		// is served over plain HTTP.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
		c := s.cfg()
		if c == nil {
			http.Error(w, "not configured", http.StatusServiceUnavailable)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		var z *config.Zone
		for i := range c.Zones {
			if c.Zones[i].Name == zone {
				z = &c.Zones[i]
			}
		}
		isBox := host == "" || (z != nil && host == z.Address.String()) || strings.EqualFold(host, c.Identity.Hostname)
		if isBox && slices.Contains(c.StatusPage.Zones, zone) {
			target := "https://" + host
			if p := c.StatusPage.HTTPSPort; p != 443 {
				target = "https://" + net.JoinHostPort(host, strconv.Itoa(p))
			}
			http.Redirect(w, r, target+"/", http.StatusFound)
			return
		}
		s.blockPage(w, r, zone, host)
	})
}

// blockPage tells a pupil that the name was blocked by the school's
// filter and its category. It records nothing about who asked.
func (s *Server) blockPage(w http.ResponseWriter, r *http.Request, zone, host string) {
	why := s.o.Source.Why(zone, host)
	if why.Verdict != "blocked" || !why.BlockPage {
		// Not a name this zone blocks (or the box's address): nothing
		// here.
		w.WriteHeader(http.StatusNotFound)
		s.render(w, "block", map[string]any{"Blocked": false, "Host": host, "Lang": s.lang()})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	s.render(w, "block", map[string]any{"Blocked": true, "Host": why.Name, "Why": why, "Category": categoryLabel(why), "Lang": s.lang()})
}

func categoryLabel(w Why) string {
	switch w.Rule {
	case "category":
		return w.Category
	case "deny":
		return "liste de l'établissement"
	case "bypass":
		return "contournement du filtre"
	case "lists-not-loaded":
		return "filtrage en cours de mise à jour"
	}
	return ""
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

const sessionCookie = "passerelle_session"
const loginCookie = "passerelle_login"

// Handler is the authenticated page (served over HTTPS).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /style.css", s.style)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("POST /logout", s.auth(s.logout))
	mux.Handle("GET /{$}", s.auth(s.home))
	mux.Handle("GET /uplinks", s.auth(s.uplinks))
	mux.Handle("GET /uplinks/chart.svg", s.auth(s.chart))
	mux.Handle("GET /zones", s.auth(s.zones))
	mux.Handle("GET /dns", s.auth(s.dns))
	mux.Handle("GET /services", s.auth(s.services))
	mux.Handle("GET /boot", s.auth(s.boot))
	mux.Handle("GET /log", s.auth(s.eventLog))
	mux.Handle("GET /diag", s.auth(s.diagForm))
	mux.Handle("POST /diag", s.auth(s.diag))
	mux.Handle("GET /firewall", s.auth(s.firewall))
	mux.Handle("GET /config", s.auth(s.configPage))
	mux.Handle("GET /tunnel", s.auth(s.tunnel))
	for _, a := range s.actions() {
		get, post := s.actionHandlers(a)
		mux.Handle("GET /"+a.name, s.auth(get))
		mux.Handle("POST /"+a.name, s.auth(post))
	}
	mux.Handle("GET /reboot", s.auth(s.rebootForm))
	mux.Handle("POST /reboot", s.auth(s.reboot))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// auth lets a request through only with a live session, and a POST only
// with the session's CSRF token.
func (s *Server) auth(next func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		var sess *session
		if err == nil {
			sess, _ = s.sessions.get(ck.Value)
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "login required", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
				http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
				return
			}
		}
		next(w, r, sess)
	})
}

func (s *Server) page(w http.ResponseWriter, name string, sess *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Lang"] = s.lang()
	data["Page"] = name
	if sess != nil {
		data["CSRF"] = sess.csrf
		data["User"] = sess.user
	}
	data["Fingerprint"] = s.Fingerprint()
	data["CertFromNOC"] = s.CertificateFromNOC()
	if c := s.cfg(); c != nil {
		data["School"] = c.Identity.Name
		data["UAI"] = c.Identity.UAI
	}
	data["Version"] = s.o.Source.Version()
	s.render(w, name, data)
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	if err := s.tmpl.ExecuteTemplate(w, name, data); err != nil {
		s.log.Warn("status page template", "page", name, "err", err)
	}
}

func (s *Server) style(w http.ResponseWriter, r *http.Request) {
	b, _ := templateFS.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(b)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	noAccount := s.cfg() == nil || s.cfg().StatusPage.PasswordHash == ""
	s.page(w, "login", nil, map[string]any{"LoginCSRF": tok, "NoAccount": noAccount})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
		return
	}
	if ok, after := s.logins.allow(clientAddr(r)); !ok {
		s.log.Warn("status page: too many login attempts", "event", "status-login-limited", "client", clientAddr(r).String())
		w.Header().Set("Retry-After", retryAfter(after))
		w.WriteHeader(http.StatusTooManyRequests)
		s.page(w, "login", nil, map[string]any{"Error": tr(s.lang()).s("login-limited"), "LoginCSRF": ck.Value})
		return
	}
	c := s.cfg()
	user, pass := r.PostFormValue("user"), r.PostFormValue("password")
	good := c != nil && c.StatusPage.PasswordHash != "" &&
		subtle.ConstantTimeCompare([]byte(user), []byte(c.StatusPage.User)) == 1 &&
		CheckPassword(c.StatusPage.PasswordHash, pass)
	if !good {
		s.log.Warn("status page: login refused", "event", "status-login-failed", "client", clientAddr(r).String())
		w.WriteHeader(http.StatusUnauthorized)
		s.page(w, "login", nil, map[string]any{"Error": tr(s.lang()).s("login-bad"), "LoginCSRF": ck.Value, "NoAccount": c == nil || c.StatusPage.PasswordHash == ""})
		return
	}
	sess := s.sessions.create(user)
	s.log.Info("status page: technician logged in", "event", "status-login", "client", clientAddr(r).String())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.sessions.end(sess.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, sess *session) {
	var changes []eventlog.Record
	if s.o.EventLogDir != "" {
		recs, _ := eventlog.Read(s.o.EventLogDir)
		changes = lastChanges(recs, 8)
	}
	s.page(w, "home", sess, map[string]any{"Screen": s.Screen(), "Changes": changes})
}

func (s *Server) uplinks(w http.ResponseWriter, r *http.Request, sess *session) {
	s.page(w, "uplinks", sess, map[string]any{"Uplinks": s.o.Source.Uplinks()})
}

func (s *Server) chart(w http.ResponseWriter, r *http.Request, sess *session) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(s.history.svg())
}

// tunnel shows the academy tunnel: state, path, peers, the academy's
// router and its routes.
func (s *Server) tunnel(w http.ResponseWriter, r *http.Request, sess *session) {
	tu, ok := s.o.Source.Tunnel()
	enabled := false
	if c := s.cfg(); c != nil {
		enabled = c.Tunnel.Enabled
	}
	s.page(w, "tunnel", sess, map[string]any{"T": tu, "On": ok && enabled, "Line": tunnelLine(tr(s.lang()), s.o.Source, s.cfg())})
}

func (s *Server) zones(w http.ResponseWriter, r *http.Request, sess *session) {
	var zones []config.Zone
	if c := s.cfg(); c != nil {
		zones = c.Zones
	}
	leases := s.o.Source.Leases("")
	for i := range leases {
		leases[i].MACText = leases[i].MAC.String()
	}
	s.page(w, "zones", sess, map[string]any{"Zones": zones, "Usage": s.o.Source.Usage(), "Leases": leases})
}

func (s *Server) dns(w http.ResponseWriter, r *http.Request, sess *session) {
	t := tr(s.lang())
	// Totals per zone and category over the period kept: aggregates
	// only. A block for no category (bypass, lists not loaded) is its own
	// row, said in words.
	type total struct {
		Zone, Category string
		Blocked        uint64
	}
	sum := map[[2]string]uint64{}
	for _, st := range s.o.Source.DNSStats() {
		label := st.Category
		switch st.Category {
		case "":
			label = t.s("dns-r-" + st.Reason)
		case "deny":
			label = t.s("dns-cat-deny")
		}
		sum[[2]string{st.Zone, label}] += st.Blocked
	}
	var totals []total
	for k, v := range sum {
		totals = append(totals, total{k[0], k[1], v})
	}
	slices.SortFunc(totals, func(a, b total) int {
		if a.Zone != b.Zone {
			return strings.Compare(a.Zone, b.Zone)
		}
		if a.Blocked != b.Blocked {
			return cmp.Compare(b.Blocked, a.Blocked)
		}
		return strings.Compare(a.Category, b.Category)
	})
	li := s.o.Source.Why("", "example.invalid").Lists
	published := ""
	if !li.Published.IsZero() {
		published = t.date(li.Published)
	}
	s.page(w, "dns", sess, map[string]any{"Totals": totals, "Lists": li, "Published": published})
}

func (s *Server) services(w http.ResponseWriter, r *http.Request, sess *session) {
	type svc struct {
		Service
		Output string
	}
	var out []svc
	for _, x := range s.o.Source.Services() {
		o, e, _ := s.o.Source.ServiceOutput(x.Name)
		text := tail(string(o)+string(e), 2000)
		out = append(out, svc{x, text})
	}
	s.page(w, "services", sess, map[string]any{"Services": out, "CanRestart": s.o.Restarter != nil})
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (s *Server) boot(w http.ResponseWriter, r *http.Request, sess *session) {
	s.page(w, "boot", sess, map[string]any{"Phases": s.o.Source.Boot()})
}

func (s *Server) eventLog(w http.ResponseWriter, r *http.Request, sess *session) {
	var recs []eventlog.Record
	var err error
	if s.o.EventLogDir != "" {
		recs, err = eventlog.Read(s.o.EventLogDir)
	}
	if len(recs) > 300 {
		recs = recs[len(recs)-300:]
	}
	slices.Reverse(recs)
	s.page(w, "log", sess, map[string]any{"Records": recs, "Err": err, "Persistent": s.o.EventLogDir != ""})
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"t": func(lang, key string) string { return tr(lang).s(key) },
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.Local().Format("02/01/2006 15:04:05")
		},
		"ms":        func(d time.Duration) string { return ms(d) },
		"diagKinds": func() []string { return []string{diagDNS, diagPing, diagTraceroute, diagHTTP} },
		"pct":       func(f float64) string { return fmt.Sprintf("%.0f %%", f*100) },
		"explain":   func(w Why, lang string) string { return Explain(w, lang) },
		"change":    func(r eventlog.Record, lang string) string { return ChangeText(r, lang) },
	}
}

func (s *Server) rebootForm(w http.ResponseWriter, r *http.Request, sess *session) {
	s.page(w, "reboot", sess, map[string]any{"Available": s.o.Reboot != nil})
}

// reboot restarts the box, only with the confirmation box ticked: the
// form's first POST without it shows the question again.
func (s *Server) reboot(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Reboot == nil {
		http.Error(w, "reboot not available", http.StatusNotImplemented)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.page(w, "reboot", sess, map[string]any{"Available": true, "Ask": true})
		return
	}
	s.log.Warn("status page: reboot asked by the technician", "event", "status-reboot", "client", clientAddr(r).String())
	// After the answer is sent.
	time.AfterFunc(time.Second, func() {
		if err := s.o.Reboot(); err != nil {
			s.log.Error("reboot", "err", err)
		}
	})
	s.page(w, "reboot", sess, map[string]any{"Available": true, "Done": true})
}

// firewall shows the firewall's counters in words: what it stopped, what
// it redirected, what went out through which link.
func (s *Server) firewall(w http.ResponseWriter, r *http.Request, sess *session) {
	cs, err := s.o.Source.FirewallCounters()
	type line struct {
		Text    string
		Packets uint64
		Bytes   uint64
	}
	var lines []line
	for _, c := range cs {
		lines = append(lines, line{CounterText(c.Name, s.lang()), c.Packets, c.Bytes})
	}
	s.page(w, "firewall", sess, map[string]any{"Lines": lines, "Err": errText(err)})
}

// CounterText says what a firewall counter counts.
func CounterText(name, lang string) string {
	t := tr(lang)
	if v, ok := t.m["fw-"+name]; ok {
		return v
	}
	for _, p := range []string{"pf-", "masq-"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			return t.f("fw-"+p+"%s", rest)
		}
	}
	return t.f("fw-rule-%s", name)
}
