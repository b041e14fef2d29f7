package integration

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"passerelle/pkg/lab"
	"passerelle/pkg/manage"
)

// The status page's diagnostics and actions (issue 17) on a running lab
// box, driven over HTTPS from the administrative zone as a technician's
// browser would (no JavaScript: plain forms).

// technician is a logged-in session on the box's status page.
type technician struct {
	t    *testing.T
	c    *http.Client
	base string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func loginTechnician(t *testing.T, ns, box string) *technician {
	t.Helper()
	c := httpsClient(ns)
	c.Timeout = 60 * time.Second
	c.Jar, _ = cookiejar.New(nil)
	tc := &technician{t: t, c: c, base: "https://" + box}
	form := tc.get("/login")
	resp, err := c.PostForm(tc.base+"/login", url.Values{"csrf": {tc.csrf(form)}, "user": {"technicien"}, "password": {statusTestPassword}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %v %v", err, resp)
	}
	resp.Body.Close()
	return tc
}

func (tc *technician) get(path string) string {
	tc.t.Helper()
	resp, err := tc.c.Get(tc.base + path)
	if err != nil {
		tc.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (tc *technician) csrf(page string) string {
	tc.t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		tc.t.Fatalf("no CSRF token in:\n%s", page)
	}
	return m[1]
}

// post sends a form from page's CSRF token and returns the status and
// the page.
func (tc *technician) post(path string, form url.Values) (int, string) {
	tc.t.Helper()
	form.Set("csrf", tc.csrf(tc.get("/")))
	resp, err := tc.c.PostForm(tc.base+path, form)
	if err != nil {
		tc.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusDiagnosticsThroughEachUplink: ping and traceroute of the lab's
// internet server through Renater and through the backup, from the box:
// the echoes come back, and the first hop is that uplink's ISP.
func TestStatusDiagnosticsThroughEachUplink(t *testing.T) {
	b := startStatusBox(t)
	b.waitOnline(t, "renater")
	b.waitOnline(t, "backup")
	tc := loginTechnician(t, b.lab.Namespace(lab.RoleClient("admin")), "10.20.0.1")
	isp := map[string]string{"renater": "192.0.2.1", "backup": "192.0.2.5"}
	for _, up := range []string{"renater", "backup"} {
		for _, target := range []string{"203.0.113.10", "www.lab.test"} {
			mark := b.mark()
			code, page := tc.post("/diag", url.Values{"kind": {"ping"}, "target": {target}, "uplink": {up}})
			if code != http.StatusOK || !strings.Contains(page, "par le lien "+up) || !strings.Contains(page, "réponse de 203.0.113.10 en") ||
				!strings.Contains(page, "4 envoyés") || strings.Contains(page, "0 reçus") {
				t.Errorf("ping %s through %s: %d\n%s", target, up, code, page)
			}
			b.waitEventAfter(t, mark, 5*time.Second, "status-diagnostic", map[string]string{"kind": "ping", "uplink": up, "target": "203.0.113.10"})
		}
		code, page := tc.post("/diag", url.Values{"kind": {"traceroute"}, "target": {"203.0.113.10"}, "uplink": {up}})
		out := page[strings.Index(page, `<pre id="out"`)+1:]
		out = out[:strings.Index(out, "</pre>")]
		t.Logf("traceroute through %s:\n%s", up, out)
		if code != http.StatusOK || !strings.Contains(out, " 1  réponse de "+isp[up]+" en") || !strings.Contains(out, " 2  réponse de 203.0.113.10 en") ||
			!strings.Contains(page, "203.0.113.10 atteinte.") {
			t.Errorf("traceroute through %s: %d\n%s", up, code, page)
		}
	}
	// The pupils' zones are not a target.
	if code, page := tc.post("/diag", url.Values{"kind": {"ping"}, "target": {"10.10.0.50"}, "uplink": {"renater"}}); code != http.StatusBadRequest || !strings.Contains(page, "zone peda") {
		t.Errorf("ping into the peda zone: %d", code)
	}
}

// TestStatusActionsRestartConfirmRollBack: on a box the NOC manages, the
// technician restarts a service from the page and sees it start again;
// confirms a pending configuration before its health gate would; and
// rolls it back to the previous generation.
func TestStatusActionsRestartConfirmRollBack(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte(statusTestPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// A long window: the gate's hold (a third of it) cannot commit before
	// the technician does.
	ml := startManageLabWith(t, "status_page:\n  password_hash: '"+string(hash)+"'\n", time.Minute)
	ml.waitEvent(t, 10*time.Second, "status-serving", map[string]string{"kind": "https", "zone": "admin"})
	tc := loginTechnician(t, ml.lab.Namespace(lab.RoleClient("admin")), "10.20.0.1")

	// Restart a service.
	if page := tc.get("/services"); !strings.Contains(page, `href="/restart?service=time"`) {
		t.Fatalf("services page offers no restart of time:\n%s", page)
	}
	if page := tc.get("/restart?service=time"); !strings.Contains(page, `name="confirm"`) {
		t.Fatalf("restart page asks nothing:\n%s", page)
	}
	mark := ml.mark()
	if code, page := tc.post("/restart", url.Values{"service": {"time"}}); code != http.StatusOK || strings.Contains(page, "action-done") {
		t.Errorf("restart without the ticked box: %d", code)
	}
	if code, page := tc.post("/restart", url.Values{"service": {"time"}, "confirm": {"yes"}}); code != http.StatusOK || !strings.Contains(page, "Le service time redémarre") {
		t.Errorf("restart: %d\n%s", code, page)
	}
	ml.waitEventAfter(t, mark, 5*time.Second, "status-action", map[string]string{"action": "restart", "service": "time"})
	ml.waitEventAfter(t, mark, 15*time.Second, "service-stopped", map[string]string{"service": "time"})
	ml.waitEventAfter(t, mark, 15*time.Second, "service-restart", map[string]string{"service": "time", "requested": "true"})
	ml.waitEventAfter(t, mark, 15*time.Second, "service-ready", map[string]string{"service": "time"})
	if n := len(ml.log.find(mark, "service-restart", map[string]string{"requested": "true"})); n != 1 {
		t.Errorf("%d services restarted, want only time", n)
	}

	// Confirm a pending configuration.
	mark = ml.mark()
	ml.publish(t, 1, func(s string) string {
		return strings.Replace(s, "deny: [bad.lab.test]", "deny: [bad.lab.test, worse.lab.test]", 1)
	})
	ml.waitEventAfter(t, mark, 15*time.Second, manage.EvBundlePending, map[string]string{"gen": "2"})
	if page := tc.get("/config"); !strings.Contains(page, `href="/confirm"`) || !strings.Contains(page, "en attente de confirmation") {
		t.Errorf("config page while pending:\n%s", page)
	}
	if code, page := tc.post("/confirm", url.Values{"confirm": {"yes"}}); code != http.StatusOK || !strings.Contains(page, "Génération 2 confirmée") {
		t.Fatalf("confirm: %d\n%s", code, page)
	}
	confirmed := ml.waitRecord(t, mark, 5*time.Second, "status-action", map[string]string{"action": "confirm"})
	committed := ml.waitRecord(t, mark, 5*time.Second, manage.EvBundleCommitted, map[string]string{"gen": "2"})
	if committed.at().Sub(confirmed.at()) > 2*time.Second {
		t.Errorf("committed %s after the technician confirmed", committed.at().Sub(confirmed.at()))
	}
	if st, gs := ml.generations(t); st.Current != 2 || st.Pending != nil || gs[0].State != manage.StateCommitted {
		t.Fatalf("after confirm: %+v %+v", st, gs[0])
	}

	// Roll back to the previous generation (the base).
	mark = ml.mark()
	if code, page := tc.post("/rollback", url.Values{"confirm": {"yes"}}); code != http.StatusOK || !strings.Contains(page, "Génération 2 abandonnée") {
		t.Fatalf("rollback: %d\n%s", code, page)
	}
	ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundleRolledBack, map[string]string{"reason": manage.RollbackTechnician, "gen": "2", "restored": "1"})
	ml.waitEventAfter(t, mark, 10*time.Second, "config-applied", map[string]string{"source": "rollback"})
	st, gs := ml.generations(t)
	if st.Current != 1 || gs[0].N != 2 || gs[0].State != manage.StateRolledBack {
		t.Fatalf("after rollback: %+v %+v", st, gs)
	}
	if page := tc.get("/config"); !strings.Contains(page, "abandonnée") {
		t.Errorf("config page after the rollback:\n%s", page)
	}
}
