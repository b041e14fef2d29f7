package status

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"passerelle/pkg/netnstest"
)

// pinRecorder is the uplink side of the diagnostics: it records which
// uplink each diagnostic was pinned to. The sockets are real; the lab
// test pins them to real uplinks.
type pinRecorder struct {
	mu   sync.Mutex
	asks []string
}

func (p *pinRecorder) Pin(uplink string) (func(string, string, syscall.RawConn) error, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asks = append(p.asks, uplink)
	return func(string, string, syscall.RawConn) error { return nil }, nil
}

// flushCounter counts the flushes of a streamed answer.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

// TestDiagnosticPingAndTracerouteStream: in a namespace where
// 198.51.100.7 answers, the ping and the traceroute through the chosen
// uplink show each answer as it comes (a flush per line) and a summary.
func TestDiagnosticPingAndTracerouteStream(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Handle()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("198.51.100.7/32")
	if err := h.AddrAdd(lo, a); err != nil {
		t.Fatal(err)
	}
	hs := newHarness(t, bcryptOnce())
	pins := &pinRecorder{}
	hs.srv.o.Uplinks = pins
	c := hs.client("10.20.0.5")
	c.login("technicien", testPassword)
	tok := csrfOf(t, c.do("GET", "/diag", nil).Body.String())
	run := func(kind string) (*flushCounter, error) {
		form := url.Values{"csrf": {tok}, "kind": {kind}, "target": {"198.51.100.7"}, "uplink": {"backup"}}
		req := httptest.NewRequest("POST", "https://10.20.0.1/diag", strings.NewReader(form.Encode()))
		req.RemoteAddr = "10.20.0.5:40000"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, ck := range c.cookies {
			req.AddCookie(ck)
		}
		rec := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
		// The raw socket is made on the namespace's thread.
		err := ns.Do(func() error { hs.h.ServeHTTP(rec, req); return nil })
		return rec, err
	}
	rec, err := run("ping")
	if err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	for _, want := range []string{"Ping de 198.51.100.7 (198.51.100.7) par le lien backup", "écho 4  réponse de 198.51.100.7 en", "4 envoyés, 4 reçus, 0 % de pertes", `id="summary"`, "</html>"} {
		if !strings.Contains(body, want) {
			t.Errorf("ping page lacks %q:\n%s", want, body)
		}
	}
	if rec.Code != http.StatusOK || rec.flushes < 5 {
		t.Errorf("ping: %d, %d flushes (want the heading and each echo sent as they come)", rec.Code, rec.flushes)
	}
	rec, err = run("traceroute")
	if err != nil {
		t.Fatal(err)
	}
	body = rec.Body.String()
	for _, want := range []string{"Traceroute vers 198.51.100.7", " 1  réponse de 198.51.100.7 en", "198.51.100.7 atteinte."} {
		if !strings.Contains(body, want) {
			t.Errorf("traceroute page lacks %q:\n%s", want, body)
		}
	}
	if len(pins.asks) != 2 || pins.asks[0] != "backup" || pins.asks[1] != "backup" {
		t.Errorf("pinned to %v, want the chosen uplink twice", pins.asks)
	}
}

// TestDiagnosticTargetsValidated: only a host name or an IPv4 address
// of the internet goes out through an uplink; the school's zones, the
// box itself, options and unknown uplinks are refused with a reason.
func TestDiagnosticTargetsValidated(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	pins := &pinRecorder{}
	h.srv.o.Uplinks = pins
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	tok := csrfOf(t, c.do("GET", "/diag", nil).Body.String())
	for _, tt := range []struct {
		kind, target, uplink, want string
	}{
		{"ping", "-c 1000 192.0.2.1", "renater", "Indiquez un nom de machine"},
		{"traceroute", "a.test;reboot", "renater", "Indiquez un nom de machine"},
		{"ping", "10.10.0.5", "renater", "dans la zone peda"},
		{"traceroute", "10.20.0.1", "backup", "dans la zone admin"},
		{"ping", "127.0.0.1", "renater", "n&#39;est pas une adresse d&#39;internet"},
		{"ping", "224.0.0.1", "renater", "n&#39;est pas une adresse d&#39;internet"},
		{"ping", "2001:db8::1", "renater", "pas une adresse IPv4"},
		{"ping", "192.0.2.1", "wifi", "Aucun lien ne s&#39;appelle"},
		{"nmap", "192.0.2.1", "renater", "Choisissez un diagnostic"},
		{"http", "http://10.10.0.5/", "renater", "dans la zone peda"},
	} {
		h.clock.add(time.Minute) // under the rate limit
		rec := c.do("POST", "/diag", url.Values{"csrf": {tok}, "kind": {tt.kind}, "target": {tt.target}, "uplink": {tt.uplink}})
		if !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("%s %q via %s: %d, want %q in the page", tt.kind, tt.target, tt.uplink, rec.Code, tt.want)
		}
		if tt.kind != "http" && rec.Code != http.StatusBadRequest {
			t.Errorf("%s %q via %s: %d, want 400", tt.kind, tt.target, tt.uplink, rec.Code)
		}
	}
}
