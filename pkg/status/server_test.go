package status

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/config"
	"passerelle/pkg/eventlog"
	"passerelle/pkg/health"
)

// fakeSource is a box in a known state.
type fakeSource struct {
	cfg *config.Config
}

func (f *fakeSource) Config() *config.Config { return f.cfg }
func (f *fakeSource) Applied() Applied {
	return Applied{Generation: 2, Source: "sighup", At: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)}
}

func (f *fakeSource) Warnings() []health.Warning {
	return []health.Warning{{Code: "interface-missing:wan1", Component: "interfaces", Severity: health.Warn, Message: "wan1 is missing"}}
}

func (f *fakeSource) Uplinks() []Uplink {
	return []Uplink{
		{Name: "renater", Interface: "wan0", State: "online", Active: true, RTT: 12 * time.Millisecond},
		{Name: "backup", Interface: "wan1", State: "online", Standby: true, RTT: 40 * time.Millisecond},
	}
}
func (f *fakeSource) Tunnel() (Tunnel, bool) { return Tunnel{}, false }
func (f *fakeSource) Time() TimeSync {
	return TimeSync{Synced: true, Server: "203.0.113.10", Offset: 3 * time.Millisecond}
}

func (f *fakeSource) Why(zone, name string) Why {
	lists := ListsInfo{Loaded: true, Version: "abc", Since: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC), Published: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Categories: 80, Domains: 1000}
	switch {
	case zone == "":
		return Why{Verdict: "unknown-zone", Lists: lists}
	case strings.HasSuffix(name, "casino.test") && zone != "admin":
		return Why{Zone: zone, Name: name, Profile: "eleves", Verdict: "blocked", Rule: "category", Category: "gambling", BlockPage: true, Lists: lists}
	}
	return Why{Zone: zone, Name: name, Profile: "eleves", Verdict: "allowed", Lists: lists}
}

func (f *fakeSource) Usage() []ZoneUsage {
	return []ZoneUsage{{Zone: "admin", Pool: 200, InUse: 3, Active: 3}, {Zone: "peda", Pool: 200, InUse: 42, Active: 42}}
}

func (f *fakeSource) Leases(zone string) []Lease {
	return []Lease{{Zone: "peda", Addr: netip.MustParseAddr("10.10.0.50"), Hostname: "pc-cdi-1", Expiry: time.Now().Add(time.Hour)}}
}

func (f *fakeSource) DNSStats() []DNSStat {
	return []DNSStat{{Zone: "peda", Reason: "gambling", Blocked: 7}}
}

func (f *fakeSource) Services() []Service {
	return []Service{{Name: "dns", State: "running", Restarts: 1, LastExit: "exit code 1"}}
}

func (f *fakeSource) ServiceOutput(string) ([]byte, []byte, bool) {
	return []byte("listening on 10.10.0.1:53\n"), nil, true
}
func (f *fakeSource) Boot() []BootPhase {
	return []BootPhase{{Phase: "early", Steps: []BootStep{{Name: "mount /perm", Took: time.Millisecond}}}}
}
func (f *fakeSource) Version() string { return "test-1" }
func (f *fakeSource) FirewallCounters() ([]Counter, error) {
	return []Counter{{Name: "spoofed", Packets: 3}, {Name: "masq-renater", Packets: 1000, Bytes: 90000}, {Name: "pf-camera", Packets: 2}}, nil
}

const testPassword = "correct horse battery staple"

func testConfig(t testing.TB, hash string) *config.Config {
	t.Helper()
	y := `version: 1
board: lab
identity: {uai: 0599999Y, name: Collège de test, academy: lille}
uplinks:
  - {name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}
zones:
  - {name: peda, kind: pedagogical, interfaces: [lan0], subnet: 10.10.0.0/24, address: 10.10.0.1, dns_profile: eleves}
  - {name: admin, kind: administrative, interfaces: [lan1], subnet: 10.20.0.0/24, address: 10.20.0.1}
dns:
  profiles:
    - {name: eleves, categories: [gambling], block_response: blockpage}
status_page:
  password_hash: '` + hash + `'
`
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var bcryptOnce = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     *testing.T
	srv   *Server
	h     http.Handler
	clock *clock
}

func newHarness(t *testing.T, hash string) *harness {
	clk := &clock{t: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	s := New(Options{Source: &fakeSource{cfg: testConfig(t, hash)}, Now: clk.now})
	return &harness{t: t, srv: s, h: s.Handler(), clock: clk}
}

// client is a browser: a cookie jar and a source address.
type client struct {
	h       *harness
	addr    string
	cookies map[string]*http.Cookie
}

func (h *harness) client(addr string) *client {
	return &client{h: h, addr: addr, cookies: map[string]*http.Cookie{}}
}

func (c *client) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "https://10.20.0.1"+path, body)
	req.RemoteAddr = c.addr + ":40000"
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	rec := httptest.NewRecorder()
	c.h.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	return rec
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in:\n%s", body)
	}
	return m[1]
}

func (c *client) login(user, pass string) *httptest.ResponseRecorder {
	form := c.do("GET", "/login", nil)
	return c.do("POST", "/login", url.Values{"csrf": {csrfOf(c.h.t, form.Body.String())}, "user": {user}, "password": {pass}})
}

// pages lists every GET page of the authenticated site.
var pages = []string{"/", "/uplinks", "/uplinks/chart.svg", "/zones", "/dns", "/services", "/boot", "/log", "/diag", "/reboot", "/firewall", "/config", "/restart?service=dns", "/confirm", "/rollback", "/tunnel"}

func TestNoPageWithoutLogin(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	c := h.client("10.20.0.5")
	for _, p := range pages {
		rec := c.do("GET", p, nil)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
			t.Errorf("GET %s without a session: %d %s, want a redirect to /login", p, rec.Code, rec.Header().Get("Location"))
		}
		if strings.Contains(rec.Body.String(), "renater") {
			t.Errorf("GET %s without a session shows the box's state", p)
		}
	}
	for _, p := range []string{"/diag", "/logout", "/reboot", "/restart", "/confirm", "/rollback"} {
		if rec := c.do("POST", p, url.Values{"csrf": {"x"}, "kind": {"dns"}, "target": {"a.test"}}); rec.Code != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d, want 401", p, rec.Code)
		}
	}
	// A made-up session cookie is no session.
	c.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: "forged"}
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("forged session: %d", rec.Code)
	}
}

func TestLoginThenEveryPage(t *testing.T) {
	for _, hash := range []struct{ name, hash string }{{"bcrypt", bcryptOnce()}, {"argon2id", HashArgon2id(testPassword)}} {
		t.Run(hash.name, func(t *testing.T) {
			h := newHarness(t, hash.hash)
			c := h.client("10.20.0.5")
			if rec := c.login("technicien", testPassword); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
				t.Fatalf("login: %d %s", rec.Code, rec.Body.String())
			}
			ck := c.cookies[sessionCookie]
			if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Fatalf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict", ck)
			}
			for _, p := range pages {
				rec := c.do("GET", p, nil)
				if rec.Code != http.StatusOK {
					t.Errorf("GET %s: %d", p, rec.Code)
				}
				if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
					t.Errorf("GET %s: CSP %q", p, csp)
				}
			}
			home := c.do("GET", "/", nil).Body.String()
			for _, want := range []string{"OK via renater, 12 ms", "backup prêt", "Génération 2", "peda : 42/200", "Filtrage à jour : listes UT1 du 2 décembre 2026", "interface-missing:wan1", "À faire", h.srv.Fingerprint(), `lang="fr"`} {
				if !strings.Contains(home, want) {
					t.Errorf("first screen lacks %q:\n%s", want, home)
				}
			}
			if strings.Contains(home, "<script") || strings.Contains(home, "http://") || strings.Contains(home, "https://") {
				t.Errorf("the page must work without JavaScript and load no external asset")
			}
		})
	}
}

func TestNoDefaultCredentials(t *testing.T) {
	h := newHarness(t, "") // no technician account configured
	c := h.client("10.20.0.5")
	form := c.do("GET", "/login", nil).Body.String()
	if !strings.Contains(form, "Aucun compte technicien") {
		t.Errorf("the login page should say no account is configured")
	}
	for _, cred := range [][2]string{{"technicien", ""}, {"admin", "admin"}, {"technicien", "technicien"}, {"root", "passerelle"}, {"", ""}} {
		if rec := c.login(cred[0], cred[1]); rec.Code != http.StatusUnauthorized || c.cookies[sessionCookie] != nil {
			t.Errorf("login %q/%q with no account: %d", cred[0], cred[1], rec.Code)
		}
		h.clock.add(2 * time.Minute) // stay under the rate limit
	}
	// With an account: the right user and the wrong password, or the
	// reverse, fail.
	h = newHarness(t, bcryptOnce())
	c = h.client("10.20.0.5")
	if rec := c.login("technicien", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", rec.Code)
	}
	if rec := c.login("admin", testPassword); rec.Code != http.StatusUnauthorized {
		t.Errorf("wrong user: %d", rec.Code)
	}
}

func TestCSRFRejected(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	c := h.client("10.20.0.5")
	// Login without the login form's token.
	if rec := c.do("POST", "/login", url.Values{"user": {"technicien"}, "password": {testPassword}}); rec.Code != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", rec.Code)
	}
	c.login("technicien", testPassword)
	if c.cookies[sessionCookie] == nil {
		t.Fatal("no session")
	}
	for _, p := range []string{"/diag", "/logout"} {
		for _, tok := range []string{"", "forged"} {
			if rec := c.do("POST", p, url.Values{"csrf": {tok}, "kind": {"dns"}, "target": {"casino.test"}, "zone": {"peda"}}); rec.Code != http.StatusForbidden {
				t.Errorf("POST %s with CSRF token %q: %d, want 403", p, tok, rec.Code)
			}
		}
	}
	// With the session's token it works.
	tok := csrfOf(t, c.do("GET", "/diag", nil).Body.String())
	if rec := c.do("POST", "/diag", url.Values{"csrf": {tok}, "kind": {"dns"}, "target": {"casino.test"}, "zone": {"peda"}}); rec.Code != http.StatusOK {
		t.Errorf("POST /diag with the token: %d", rec.Code)
	}
	// Another session's token is refused.
	other := h.client("10.20.0.6")
	other.login("technicien", testPassword)
	otherTok := csrfOf(t, other.do("GET", "/diag", nil).Body.String())
	if rec := c.do("POST", "/diag", url.Values{"csrf": {otherTok}, "kind": {"dns"}, "target": {"a.test"}, "zone": {"peda"}}); rec.Code != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", rec.Code)
	}
}

func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	c := h.client("10.20.0.5")
	codes := []int{}
	for range 8 {
		codes = append(codes, c.login("technicien", "guess").Code)
	}
	want := []int{401, 401, 401, 401, 401, 429, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("attempt codes %v, want %v", codes, want)
		}
	}
	// Even the right password waits.
	rec := c.login("technicien", testPassword)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("right password while limited: %d (Retry-After %q)", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Another address is not affected; a minute later one more try.
	if rec := h.client("10.20.0.6").login("technicien", testPassword); rec.Code != http.StatusSeeOther {
		t.Errorf("other address: %d", rec.Code)
	}
	h.clock.add(61 * time.Second)
	if rec := c.login("technicien", testPassword); rec.Code != http.StatusSeeOther {
		t.Errorf("after a minute: %d", rec.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	h.srv.reconcile() // reads session_timeout (30m by default)
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	h.clock.add(29 * time.Minute)
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusOK {
		t.Fatalf("after 29 min of use: %d", rec.Code)
	}
	h.clock.add(29 * time.Minute) // idle time counts from the last request
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusOK {
		t.Fatalf("29 min after the last request: %d", rec.Code)
	}
	h.clock.add(31 * time.Minute)
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("31 min idle: %d, want a redirect to the login", rec.Code)
	}
	// Logout ends the session at once.
	c.login("technicien", testPassword)
	old := c.cookies[sessionCookie].Value
	tok := csrfOf(t, c.do("GET", "/", nil).Body.String())
	c.do("POST", "/logout", url.Values{"csrf": {tok}})
	c.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: old}
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("after logout the old cookie still works: %d", rec.Code)
	}
	// And no session outlives 12 hours, however busy.
	c.login("technicien", testPassword)
	for range 26 {
		h.clock.add(29 * time.Minute)
		c.do("GET", "/", nil)
	}
	if rec := c.do("GET", "/", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("a session 12h35 old: %d", rec.Code)
	}
}

func TestDiagnosticDNSExplainsAndIsRateLimited(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	h.srv.o.Lookup = func(_ context.Context, zone, name string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("10.10.0.1")}, nil
	}
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	tok := csrfOf(t, c.do("GET", "/diag", nil).Body.String())
	rec := c.do("POST", "/diag", url.Values{"csrf": {tok}, "kind": {"dns"}, "target": {"www.casino.test"}, "zone": {"peda"}})
	body := rec.Body.String()
	for _, want := range []string{"catégorie gambling (UT1) du profil eleves (listes UT1 du 2 décembre 2026)", "10.10.0.1"} {
		if !strings.Contains(body, want) {
			t.Errorf("DNS diagnostic lacks %q:\n%s", want, body)
		}
	}
	limited := false
	for range 30 {
		if c.do("POST", "/diag", url.Values{"csrf": {tok}, "kind": {"dns"}, "target": {"a.test"}, "zone": {"peda"}}).Code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("30 diagnostics in a row were not rate-limited")
	}
}

func TestBlockPageAndRedirect(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	get := func(zone, host string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://"+host+"/some/path?q=1", nil)
		req.RemoteAddr = "10.10.0.77:1234"
		rec := httptest.NewRecorder()
		h.srv.PlainHandler(zone).ServeHTTP(rec, req)
		return rec
	}
	rec := get("peda", "www.casino.test")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "bloqué par le filtre") || !strings.Contains(rec.Body.String(), "gambling") {
		t.Errorf("block page: %d\n%s", rec.Code, rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), "10.10.0.77") || strings.Contains(rec.Body.String(), "<script") {
		t.Errorf("the block page must say nothing of who asked and run no script")
	}
	if rec := get("peda", "allowed.test"); rec.Code != http.StatusNotFound {
		t.Errorf("a name not blocked: %d", rec.Code)
	}
	// The admin zone's plain HTTP sends the box's address to HTTPS.
	rec = get("admin", "10.20.0.1")
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://10.20.0.1/" {
		t.Errorf("admin HTTP: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	// A pupils' zone never gets the status page.
	if rec := get("peda", "10.10.0.1"); rec.Code == http.StatusFound || strings.Contains(rec.Body.String(), "login") {
		t.Errorf("peda HTTP on the box's address: %d %s", rec.Code, rec.Body.String())
	}
}

func TestWantedListeners(t *testing.T) {
	got := wanted(testConfig(t, ""))
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	want := map[string]bool{"https 10.20.0.1:443": true, "http 10.20.0.1:80": true, "http 10.10.0.1:80": true}
	if len(got) != len(want) {
		t.Errorf("listeners %v, want %v", keys, want)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s in %v", k, keys)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	a := HashArgon2id("secret")
	for _, tt := range []struct {
		hash, pass string
		ok         bool
	}{
		{bcryptOnce(), testPassword, true}, {bcryptOnce(), "x", false},
		{a, "secret", true}, {a, "Secret", false},
		{"", "", false}, {"secret", "secret", false}, {"$argon2id$v=19$m=1,t=1,p=1$AAAA$", "", false},
	} {
		if got := CheckPassword(tt.hash, tt.pass); got != tt.ok {
			t.Errorf("CheckPassword(%.20q, %q) = %v", tt.hash, tt.pass, got)
		}
	}
}

func TestControlSocketAnswers(t *testing.T) {
	h := newHarness(t, "")
	ts := httptest.NewServer(h.srv.ControlHandler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/why?name=www.casino.test")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"category": "gambling"`) || !strings.Contains(string(b), "zone peda") {
		t.Errorf("why over the socket:\n%s", b)
	}
}

func TestScreenEnglish(t *testing.T) {
	src := &fakeSource{cfg: testConfig(t, "")}
	sc := BuildScreen(src, "en", time.Now())
	if sc.Lines[0].Text != "OK via renater, 12 ms" || sc.Lines[1].Text != "backup ready" || sc.Overall != Warn {
		t.Errorf("screen: %+v", sc)
	}
}

func TestRebootNeedsCSRFAndConfirmation(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	rebooted := make(chan struct{}, 1)
	h.srv.o.Reboot = func() error { rebooted <- struct{}{}; return nil }
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	tok := csrfOf(t, c.do("GET", "/reboot", nil).Body.String())
	if rec := c.do("POST", "/reboot", url.Values{"csrf": {"forged"}, "confirm": {"yes"}}); rec.Code != http.StatusForbidden {
		t.Errorf("reboot with a forged CSRF token: %d", rec.Code)
	}
	if rec := c.do("POST", "/reboot", url.Values{"csrf": {tok}}); !strings.Contains(rec.Body.String(), "Cochez la case") {
		t.Errorf("reboot without confirmation: %d\n%s", rec.Code, rec.Body.String())
	}
	select {
	case <-rebooted:
		t.Fatal("rebooted without confirmation or with a forged token")
	case <-time.After(1500 * time.Millisecond):
	}
	if rec := c.do("POST", "/reboot", url.Values{"csrf": {tok}, "confirm": {"yes"}}); !strings.Contains(rec.Body.String(), "La box redémarre") {
		t.Errorf("confirmed reboot: %d", rec.Code)
	}
	select {
	case <-rebooted:
	case <-time.After(3 * time.Second):
		t.Error("confirmed reboot did not reboot")
	}
}

func TestFirewallCountersInWords(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	body := c.do("GET", "/firewall", nil).Body.String()
	for _, want := range []string{"adresse source usurpée", "Paquets sortis vers internet par le lien renater", "redirection de port camera", "90000"} {
		if !strings.Contains(body, want) {
			t.Errorf("firewall page lacks %q", want)
		}
	}
}

// TestFilteringLineShowsThePublicationDate: the UT1 publication date in
// words, in both languages; the install date when it is unknown.
func TestFilteringLineShowsThePublicationDate(t *testing.T) {
	src := &fakeSource{cfg: testConfig(t, "")}
	for lang, want := range map[string]string{
		"fr": "Filtrage à jour : listes UT1 du 2 décembre 2026 (installées le 04/12/2026 ; 80 catégories, 1000 domaines)",
		"en": "Filtering up to date: UT1 lists of 2 December 2026 (installed 04/12/2026; 80 categories, 1000 domains)",
	} {
		sc := BuildScreen(src, lang, time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
		for _, l := range sc.Lines {
			if l.Key == "filtering" && (l.Text != want || l.Level != OK) {
				t.Errorf("%s: filtering line %q (%s), want %q", lang, l.Text, l.Level, want)
			}
		}
	}
}

// dnsStatsSource blocks in two zones, for a UT1 category, the deny
// rules and the bypass defence, over two hours.
type dnsStatsSource struct{ *fakeSource }

func (dnsStatsSource) DNSStats() []DNSStat {
	h := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	return []DNSStat{
		{Hour: h, Zone: "peda", Reason: "gambling", Category: "gambling", Blocked: 7},
		{Hour: h.Add(time.Hour), Zone: "peda", Reason: "gambling", Category: "gambling", Blocked: 5},
		{Hour: h, Zone: "peda", Reason: "deny", Category: "deny", Blocked: 3},
		{Hour: h, Zone: "peda", Reason: "bypass", Blocked: 2},
		{Hour: h, Zone: "guest", Reason: "adult", Category: "adult", Blocked: 4},
	}
}

// TestDNSPageShowsBlockedByZoneAndCategory: the DNS detail page sums the
// hours into one row per zone and category, names the deny bucket and
// the blocks for no category in words, in French and in English.
func TestDNSPageShowsBlockedByZoneAndCategory(t *testing.T) {
	for _, tt := range []struct {
		lang string
		want []string
	}{
		{"fr", []string{"Requêtes bloquées par zone et catégorie", "<td>peda</td><td>gambling</td><td>12</td>",
			"<td>peda</td><td>liste d&#39;interdiction du profil</td><td>3</td>",
			"<td>peda</td><td>contournement du résolveur (DNS chiffré, relais)</td><td>2</td>", "<td>guest</td><td>adult</td><td>4</td>"}},
		{"en", []string{"Blocked queries by zone and category", "<th scope=\"col\">category</th>", "<td>peda</td><td>gambling</td><td>12</td>",
			"<td>peda</td><td>the profile&#39;s deny list</td><td>3</td>",
			"<td>peda</td><td>resolver bypass (encrypted DNS, relay)</td><td>2</td>", "<td>guest</td><td>adult</td><td>4</td>"}},
	} {
		t.Run(tt.lang, func(t *testing.T) {
			cfg := testConfig(t, bcryptOnce())
			cfg.StatusPage.Language = tt.lang
			clk := &clock{t: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
			s := New(Options{Source: dnsStatsSource{&fakeSource{cfg: cfg}}, Now: clk.now})
			h := &harness{t: t, srv: s, h: s.Handler(), clock: clk}
			c := h.client("10.20.0.5")
			c.login("technicien", testPassword)
			body := c.do("GET", "/dns", nil).Body.String()
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("DNS page lacks %q:\n%s", w, body)
				}
			}
			// guest sorts before peda; within a zone the most blocked first.
			if i, j := strings.Index(body, "<td>peda</td><td>gambling</td>"), strings.Index(body, "<td>peda</td><td>"+map[string]string{"fr": "liste", "en": "the profile"}[tt.lang]); i < 0 || j < i {
				t.Errorf("rows of peda not sorted by count")
			}
		})
	}
}

// TestPushedCertificateServedByThePage: a certificate the NOC pushed
// (InstallCertificate, as the management API calls it) is served by the
// page's HTTPS listener from the next handshake, without a restart, and
// its fingerprint is the one the footer and the first screen show, said
// to come from the NOC; a refused one changes nothing.
func TestPushedCertificateServedByThePage(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	h.srv.o.StateDir = t.TempDir()
	first := h.srv.Fingerprint()
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	l := &listener{kind: "https", zone: "admin", addr: addr}
	if err := h.srv.listen(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.srv.Close() })
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the fingerprint
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return boxcert.FingerprintDER(c.ConnectionState().PeerCertificates[0].Raw)
	}
	if got := served(); got != first {
		t.Fatalf("served %s, want the first-boot %s", got, first)
	}
	now := h.clock.now()
	if _, err := h.srv.InstallCertificate([]byte("not PEM"), nil); err == nil {
		t.Fatal("garbage installed")
	}
	certPEM, keyPEM := testCertPEM(t, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	fp, err := h.srv.InstallCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if fp == first || h.srv.Fingerprint() != fp {
		t.Fatalf("fingerprint after the push: %s (returned %s, first %s)", h.srv.Fingerprint(), fp, first)
	}
	if got := served(); got != fp {
		t.Errorf("after the push the page serves %s, want %s", got, fp)
	}
	if sc := h.srv.Screen(); sc.Fingerprint != fp || !sc.CertFromNOC {
		t.Errorf("screen: %s from NOC %v", sc.Fingerprint, sc.CertFromNOC)
	}
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	body := c.do("GET", "/", nil).Body.String()
	if !strings.Contains(body, `<code id="fingerprint">`+fp+`</code> (certificat installé par le NOC)`) {
		t.Errorf("footer lacks the pushed fingerprint:\n%s", body)
	}
}

func testCertPEM(t *testing.T, nb, na time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "box.example"}, NotBefore: nb, NotAfter: na,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k})
}

func TestLogPageShowsEachRecordsAttributesSorted(t *testing.T) {
	dir := t.TempDir()
	ring, err := eventlog.Open(dir, eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	slog.New(eventlog.NewHandler(slog.NewTextHandler(io.Discard, nil), ring)).
		Info("configuration applied", "event", "config-applied", "source", "start", "config", "/perm/config.yaml")
	if err := ring.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, bcryptOnce())
	h.srv = New(Options{Source: &fakeSource{cfg: testConfig(t, bcryptOnce())}, Now: h.clock.now, EventLogDir: dir})
	h.h = h.srv.Handler()
	c := h.client("10.20.0.5")
	if rec := c.login("technicien", testPassword); rec.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", rec.Code)
	}
	page := c.do("GET", "/log", nil).Body.String()
	if want := "config=/perm/config.yaml event=config-applied source=start"; !strings.Contains(page, want) {
		t.Errorf("the log page lacks %q:\n%s", want, page)
	}
}
