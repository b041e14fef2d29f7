package status

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// actionsBox records the actions the page asked for. The lab test
// (integration/lab_status_actions_test.go) runs them on the real
// supervisor and manager.
type actionsBox struct {
	mu       sync.Mutex
	restarts []string
	confirms int
	rolls    int
}

func (a *actionsBox) Restart(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.restarts = append(a.restarts, name)
	return nil
}

func (a *actionsBox) List() ([]Generation, error) {
	return []Generation{{N: 3, Version: 7, State: "pending", Current: true}, {N: 2, Version: 6, State: "committed"}, {N: 1, State: "base"}}, nil
}

func (a *actionsBox) Confirm() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.confirms++
	return 3, nil
}

func (a *actionsBox) RollBack(context.Context, string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rolls++
	if a.rolls > 1 {
		return 0, errors.New("no generation kept before generation 2")
	}
	return 3, nil
}

// pendingSource is a box whose configuration awaits confirmation.
type pendingSource struct{ fakeSource }

func (p *pendingSource) Applied() Applied {
	a := p.fakeSource.Applied()
	a.Pending, a.Managed = true, true
	a.Deadline = time.Date(2026, 12, 5, 9, 4, 0, 0, time.UTC) // the harness's clock + 4 min
	return a
}

func actionsHarness(t *testing.T) (*harness, *actionsBox) {
	h := newHarness(t, bcryptOnce())
	box := &actionsBox{}
	h.srv.o.Source = &pendingSource{fakeSource{cfg: h.srv.o.Source.Config()}}
	h.srv.o.Restarter, h.srv.o.Generations = box, box
	return h, box
}

// TestActionsNeedLoginCSRFAndConfirmation: restart, confirm and roll back
// show no page without a session, refuse a missing or forged CSRF token,
// ask again without the ticked box, and act only with both.
func TestActionsNeedLoginCSRFAndConfirmation(t *testing.T) {
	for _, tt := range []struct {
		action string
		form   url.Values
		done   string
		count  func(*actionsBox) int
	}{
		{"restart", url.Values{"service": {"dns"}}, "Le service dns redémarre.", func(b *actionsBox) int { return len(b.restarts) }},
		{"confirm", url.Values{}, "Génération 3 confirmée", func(b *actionsBox) int { return b.confirms }},
		{"rollback", url.Values{}, "Génération 3 abandonnée", func(b *actionsBox) int { return b.rolls }},
	} {
		t.Run(tt.action, func(t *testing.T) {
			h, box := actionsHarness(t)
			anon := h.client("10.20.0.9")
			path := "/" + tt.action + "?" + tt.form.Encode()
			if rec := anon.do("GET", path, nil); rec.Code != http.StatusSeeOther {
				t.Errorf("GET %s without a session: %d", path, rec.Code)
			}
			f := url.Values{"confirm": {"yes"}, "csrf": {"x"}}
			for k, v := range tt.form {
				f[k] = v
			}
			if rec := anon.do("POST", "/"+tt.action, f); rec.Code != http.StatusUnauthorized {
				t.Errorf("POST without a session: %d", rec.Code)
			}
			c := h.client("10.20.0.5")
			c.login("technicien", testPassword)
			page := c.do("GET", path, nil)
			if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `name="confirm"`) {
				t.Fatalf("GET %s: %d\n%s", path, page.Code, page.Body.String())
			}
			tok := csrfOf(t, page.Body.String())
			for _, bad := range []string{"", "forged"} {
				f.Set("csrf", bad)
				if rec := c.do("POST", "/"+tt.action, f); rec.Code != http.StatusForbidden {
					t.Errorf("POST with CSRF %q: %d", bad, rec.Code)
				}
			}
			f.Set("csrf", tok)
			f.Del("confirm")
			if rec := c.do("POST", "/"+tt.action, f); !strings.Contains(rec.Body.String(), "Cochez la case") {
				t.Errorf("POST without confirmation: %d\n%s", rec.Code, rec.Body.String())
			}
			if n := tt.count(box); n != 0 {
				t.Fatalf("acted %d times before a confirmed, valid request", n)
			}
			f.Set("confirm", "yes")
			rec := c.do("POST", "/"+tt.action, f)
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tt.done) {
				t.Errorf("confirmed POST: %d\n%s", rec.Code, rec.Body.String())
			}
			if n := tt.count(box); n != 1 {
				t.Errorf("acted %d times, want 1", n)
			}
		})
	}
}

// TestRestartValidatesTheName: only a supervised service's name is
// restarted.
func TestRestartValidatesTheName(t *testing.T) {
	h, box := actionsHarness(t)
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	tok := csrfOf(t, c.do("GET", "/services", nil).Body.String())
	for _, name := range []string{"", "nope", "dns; reboot", "../dns"} {
		rec := c.do("POST", "/restart", url.Values{"csrf": {tok}, "confirm": {"yes"}, "service": {name}})
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Aucun service ne s&#39;appelle") {
			t.Errorf("restart %q: %d", name, rec.Code)
		}
	}
	if len(box.restarts) != 0 {
		t.Errorf("restarted %v", box.restarts)
	}
	if body := c.do("GET", "/services", nil).Body.String(); !strings.Contains(body, `href="/restart?service=dns"`) {
		t.Errorf("the services page offers no restart:\n%s", body)
	}
}

// TestConfigPageAndUnavailableActions: the generations are listed; a box
// without management offers neither confirm nor roll back, and a failed
// roll back says why.
func TestConfigPageAndUnavailableActions(t *testing.T) {
	h, _ := actionsHarness(t)
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	body := c.do("GET", "/config", nil).Body.String()
	for _, want := range []string{"en attente de confirmation (encore 4m0s avant le retour automatique", "fichier d&#39;origine", `href="/confirm"`, `href="/rollback"`} {
		if !strings.Contains(body, want) {
			t.Errorf("config page lacks %q", want)
		}
	}
	tok := csrfOf(t, body)
	c.do("POST", "/rollback", url.Values{"csrf": {tok}, "confirm": {"yes"}})
	if rec := c.do("POST", "/rollback", url.Values{"csrf": {tok}, "confirm": {"yes"}}); rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "no generation kept") {
		t.Errorf("failed rollback: %d", rec.Code)
	}
	h.srv.o.Generations = nil
	for _, a := range []string{"/confirm", "/rollback"} {
		if rec := c.do("POST", a, url.Values{"csrf": {tok}, "confirm": {"yes"}}); rec.Code != http.StatusConflict {
			t.Errorf("POST %s on an unmanaged box: %d", a, rec.Code)
		}
	}
	if body := c.do("GET", "/config", nil).Body.String(); !strings.Contains(body, "pas gérée") {
		t.Errorf("unmanaged config page:\n%s", body)
	}
}

// tunnelSource is a box whose academy tunnel is up, direct.
type tunnelSource struct{ fakeSource }

func (s *tunnelSource) Tunnel() (Tunnel, bool) {
	return Tunnel{Enabled: true, Up: true, Via: "renater", RTT: 9 * time.Millisecond, Backend: "Running",
		Addrs: []netip.Addr{netip.MustParseAddr("100.64.0.7")}, Peers: 3, PeersOnline: 2, Academy: "acad-router",
		AcademyIP: netip.MustParseAddr("100.64.0.1"), Routes: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")},
		Path: "direct", Endpoint: "203.0.113.100:41641"}, true
}

// TestTunnelPage: the tunnel's detail page says its path, the academy's
// router and routes, and its peers.
func TestTunnelPage(t *testing.T) {
	h := newHarness(t, bcryptOnce())
	cfg := h.srv.o.Source.Config()
	cfg.Tunnel.Enabled = true
	h.srv.o.Source = &tunnelSource{fakeSource{cfg: cfg}}
	c := h.client("10.20.0.5")
	c.login("technicien", testPassword)
	body := c.do("GET", "/tunnel", nil).Body.String()
	for _, want := range []string{"Établi via renater, 9 ms", "direct (WireGuard entre les sites) (203.0.113.100:41641), par le lien renater", "acad-router (100.64.0.1)", "10.200.0.0/16", "2 / 3", "100.64.0.7"} {
		if !strings.Contains(body, want) {
			t.Errorf("tunnel page lacks %q", want)
		}
	}
}

// enrolSource is a box whose tunnel is not up, for an enrolment reason.
type enrolSource struct {
	fakeSource
	enrolment string
}

func (s *enrolSource) Tunnel() (Tunnel, bool) {
	return Tunnel{Enabled: true, Enrolment: s.enrolment, KeyFile: "/perm/tunnel/authkey", Reason: "not enrolled yet: logging in",
		Backend: "NoState"}, true
}

// TestTunnelLineSaysWhatTheKeyLacks: a box that cannot enrol says which
// file lacks its key and that the academy's support has it, not "check
// internet"; one that is logging in is simply down.
func TestTunnelLineSaysWhatTheKeyLacks(t *testing.T) {
	cfg := newHarness(t, bcryptOnce()).srv.o.Source.Config()
	cfg.Tunnel.Enabled = true
	for _, tc := range []struct {
		enrolment, lang, text, advice string
	}{
		{"no-key", "fr", "aucune clé d'inscription dans /perm/tunnel/authkey", "clé pré-autorisée de cette box"},
		{"no-key", "en", "Not enrolled at the academy: no auth key in /perm/tunnel/authkey.", "pre-authorised key"},
		{"key-invalid", "en", "/perm/tunnel/authkey does not hold a usable auth key", "alone on one line"},
		{"key-refused", "en", "it refused the auth key in /perm/tunnel/authkey", "ask the academy's support for a new one"},
		{"enrolling", "en", "Down: not enrolled yet: logging in", "check internet"},
	} {
		l := tunnelLine(tr(tc.lang), &enrolSource{fakeSource{cfg: cfg}, tc.enrolment}, cfg)
		if l.Level != Bad || !strings.Contains(l.Text, tc.text) || !strings.Contains(l.Advice, tc.advice) {
			t.Errorf("%s (%s): %s %q / %q, want %q / %q", tc.enrolment, tc.lang, l.Level, l.Text, l.Advice, tc.text, tc.advice)
		}
	}
}
