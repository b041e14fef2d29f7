package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/lab"
)

// The technician's view (issue 17) on a running lab box: the status page
// answers on the administrative zone only, the block page on the pupils'
// zones, the commands talk to the daemon, and the log survives a restart.

const statusTestPassword = "mot de passe du technicien"

// statusBox is a lab box whose pupils' profile answers with the block
// page, with a technician account, its control socket and /perm in the
// test's directories.
type statusBox struct {
	*firmware
	socket string
	extra  []string
}

func startStatusBox(t *testing.T) *statusBox {
	t.Helper()
	needRoot(t)
	abs, err := filepath.Abs(ut1Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "SOURCE.md")); err != nil {
		t.Skipf("UT1 snapshot not found at %s: %v", abs, err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(statusTestPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := readDemo(t)
	cfg = strings.Replace(cfg, "dns:\n", "dns:\n  lists:\n    directory: "+abs+"\n", 1)
	cfg = strings.Replace(cfg, "    - name: eleves\n", "    - name: eleves\n      block_response: blockpage\n", 1)
	cfg += "status_page:\n  password_hash: '" + string(hash) + "'\n"
	fw := labFor(t, []byte(cfg), nil)
	state := t.TempDir()
	b := &statusBox{firmware: fw, socket: filepath.Join(t.TempDir(), "control.sock")}
	b.extra = []string{"--control-socket", b.socket, "--event-log-dir", filepath.Join(state, "log"), "--status-dir", filepath.Join(state, "status")}
	fw.launch(t, state, b.extra...)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	fw.waitEvent(t, 20*time.Second, "dns-lists-loaded", nil)
	fw.waitEvent(t, 10*time.Second, "status-serving", map[string]string{"kind": "https", "zone": "admin"})
	return b
}

// restart stops the daemon with SIGTERM and starts it again on the same
// /perm.
func (b *statusBox) restart(t *testing.T) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := b.wait(15 * time.Second); !ok {
		t.Fatal("firmware did not stop on SIGTERM")
	}
	mark := b.log.mark()
	b.launch(t, b.stateDir, b.extra...)
	b.waitEventAfter(t, mark, 10*time.Second, "config-applied", nil)
}

// cli runs a passerelle command against the box.
func (b *statusBox) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bins(t).passerelle, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("passerelle %v: %v", args, err)
	}
	return out.String(), code
}

func httpsClient(ns string) *http.Client {
	c := lab.HTTPClient(ns)
	c.Timeout = 3 * time.Second
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// dialRefused says whether a TCP connection from ns to addr fails, and
// how fast.
func dialRefused(ns, addr string) (bool, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	c, err := lab.DialContext(ctx, ns, "tcp", addr)
	if err == nil {
		c.Close()
		return false, time.Since(start)
	}
	return true, time.Since(start)
}

func TestStatusPageZonesBlockPageAndCommands(t *testing.T) {
	b := startStatusBox(t)
	ns := func(zone string) string { return b.lab.Namespace(lab.RoleClient(zone)) }

	// The page answers over HTTPS from the administrative zone, with the
	// certificate whose fingerprint `passerelle status` shows.
	out, code := b.cli(t, "status", "--json", "--socket", b.socket)
	var screen struct {
		Fingerprint string
		Lines       []struct{ Key, Level, Text string }
	}
	if err := json.Unmarshal([]byte(out), &screen); err != nil || code > 1 {
		t.Fatalf("passerelle status --json: %d %v\n%s", code, err, out)
	}
	resp, err := httpsClient(ns("admin")).Get("https://10.20.0.1/login")
	if err != nil {
		t.Fatalf("status page from the admin zone: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="password"`) {
		t.Errorf("status page from admin: %d\n%s", resp.StatusCode, body)
	}
	if got := boxcert.FingerprintDER(resp.TLS.PeerCertificates[0].Raw); got != screen.Fingerprint {
		t.Errorf("certificate fingerprint %q, passerelle status says %q", got, screen.Fingerprint)
	}
	if !strings.Contains(string(body), screen.Fingerprint) {
		t.Errorf("the page footer does not show the fingerprint")
	}
	// Plain HTTP on the admin zone sends the technician to HTTPS.
	resp, err = httpsClient(ns("admin")).Get("http://10.20.0.1/")
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://10.20.0.1/" {
		t.Errorf("http://10.20.0.1/ from admin: %v %v", err, resp)
	}

	// Not from the pedagogical or guest zones, nor from the uplinks: and
	// refused at once (the firewall rejects), not left to time out.
	for _, c := range []struct{ ns, addr string }{
		{ns("peda"), "10.10.0.1:443"}, {ns("peda"), "10.20.0.1:443"},
		{ns("guest"), "10.30.0.1:443"}, {ns("guest"), "10.20.0.1:443"},
		{b.lab.Namespace(lab.RoleISP("renater")), "192.0.2.2:443"}, {b.lab.Namespace(lab.RoleISP("renater")), "192.0.2.2:80"},
		{b.lab.Namespace(lab.RoleISP("backup")), "192.0.2.6:443"},
	} {
		refused, took := dialRefused(c.ns, c.addr)
		if !refused {
			t.Errorf("%s reached from %s", c.addr, c.ns)
		} else if took > time.Second && strings.HasSuffix(c.ns, "peda") {
			t.Errorf("HTTPS to %s from %s refused after %v: want a quick refusal", c.addr, c.ns, took)
		}
	}
	// The box's address over plain HTTP from a pupils' zone is no way
	// in either.
	resp, err = httpsClient(ns("peda")).Get("http://10.10.0.1/")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(b), "password") {
			t.Errorf("http://10.10.0.1/ from peda: %d\n%s", resp.StatusCode, b)
		}
	}

	// The block page: a gambling name resolves to the box in the pupils'
	// zones, and the box says why, over plain HTTP.
	gambling := firstDomain(t, "gambling")
	for _, zone := range []string{"peda", "guest"} {
		box := map[string]string{"peda": "10.10.0.1", "guest": "10.30.0.1"}[zone]
		m, err := dnsQuery(t, ns(zone), box+":53", dns.Fqdn(gambling), dns.TypeA, "udp")
		if err != nil || len(m.Answer) != 1 || !strings.Contains(m.Answer[0].String(), box) {
			t.Fatalf("%s: %s should resolve to the block page %s: %v %v", zone, gambling, box, err, m)
		}
		req, _ := http.NewRequest("GET", "http://"+box+"/some/page", nil)
		req.Host = gambling
		resp, err := httpsClient(ns(zone)).Do(req)
		if err != nil {
			t.Fatalf("block page in %s: %v", zone, err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(page), "bloqué par le filtre") || !strings.Contains(string(page), "gambling") {
			t.Errorf("block page in %s: %d\n%s", zone, resp.StatusCode, page)
		}
		if refused, took := dialRefused(ns(zone), box+":443"); !refused || took > time.Second {
			t.Errorf("HTTPS to the block page address in %s: refused=%v after %v", zone, refused, took)
		}
	}

	// The commands.
	out, _ = b.cli(t, "status", "--socket", b.socket)
	for _, want := range []string{"Internet", "OK via renater", "Filtrage à jour : listes UT1 du 17 août 2026", "Configuration", "Génération 1", "SHA-256"} {
		if !strings.Contains(out, want) {
			t.Errorf("passerelle status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("passerelle status:\n%s", out)
	out, code = b.cli(t, "why", gambling, "--zone", "peda", "--socket", b.socket)
	if code != 0 || !strings.Contains(out, "bloqué dans la zone peda : catégorie gambling (UT1) du profil eleves") || !strings.Contains(out, "(listes UT1 du 17 août 2026)") {
		t.Errorf("passerelle why %s --zone peda: %d\n%s", gambling, code, out)
	}
	out, _ = b.cli(t, "why", "bad.lab.test", "--socket", b.socket)
	if !strings.Contains(out, "liste noire du profil eleves") || !strings.Contains(out, "zone admin") {
		t.Errorf("passerelle why bad.lab.test (every zone):\n%s", out)
	}
	out, code = b.cli(t, "leases", "peda", "--socket", b.socket)
	if code != 0 || !strings.Contains(out, "zone peda:") {
		t.Errorf("passerelle leases peda: %d\n%s", code, out)
	}
	out, code = b.cli(t, "log", "--socket", b.socket, "--event", "config-applied")
	if code != 0 || !strings.Contains(out, "configuration applied") || !strings.Contains(out, "source=start") {
		t.Errorf("passerelle log: %d\n%s", code, out)
	}
}

func TestStatusLogSurvivesRestart(t *testing.T) {
	b := startStatusBox(t)
	logDir := filepath.Join(b.stateDir, "log")
	before, _ := b.cli(t, "status", "--json", "--socket", b.socket)
	b.restart(t)
	// The certificate is kept: the fingerprint a technician noted stays.
	b.waitEvent(t, 10*time.Second, "status-serving", map[string]string{"kind": "https"})
	after, _ := b.cli(t, "status", "--json", "--socket", b.socket)
	if fp := jsonField(before, "fingerprint"); fp == "" || fp != jsonField(after, "fingerprint") {
		t.Errorf("certificate fingerprint %q before the restart, %q after", fp, jsonField(after, "fingerprint"))
	}
	out, code := b.cli(t, "log", "--dir", logDir, "--event", "daemon-running")
	if n := strings.Count(out, "daemon-running"); code != 0 || n != 2 {
		t.Errorf("after a restart the log holds %d daemon-running events, want 2:\n%s", n, out)
	}
	// And the reader works with the daemon down.
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.wait(15 * time.Second)
	out, code = b.cli(t, "log", "--dir", logDir, "-n", "5")
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("passerelle log -n 5 with the daemon down: %d\n%s", code, out)
	}
}

func jsonField(doc, key string) string {
	var m map[string]any
	json.Unmarshal([]byte(doc), &m)
	s, _ := m[key].(string)
	return s
}
