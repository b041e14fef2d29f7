package integration

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/lab"
)

// ut1Snapshot is the shared UT1 snapshot beside the repository.
const ut1Snapshot = "../../shared/data/ut1"

// withListsDir writes a copy of the demo config whose DNS lists are read
// from dir, and returns its path.
func withListsDir(t *testing.T, dir string) string {
	t.Helper()
	edited := strings.Replace(readDemo(t), "dns:\n", "dns:\n  lists:\n    directory: "+dir+"\n", 1)
	p := filepath.Join(t.TempDir(), "demo-lists.yaml")
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dnsQuery asks the box from inside namespace ns.
func dnsQuery(t *testing.T, ns, server, name string, qtype uint16, network string) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := lab.DialContext(ctx, ns, network, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	c := &dns.Conn{Conn: conn}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	if err := c.WriteMsg(m); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

func edeText(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

// firstDomain returns the first domain entry of a snapshot category.
func firstDomain(t *testing.T, category string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(ut1Snapshot, category, "domains"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && strings.ContainsAny(l, "abcdefghijklmnopqrstuvwxyz") {
			return l
		}
	}
	t.Fatalf("no domain in %s", category)
	return ""
}

func TestLabDNSProfilesPerZoneAndNoOpenResolver(t *testing.T) {
	needRoot(t)
	abs, err := filepath.Abs(ut1Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "SOURCE.md")); err != nil {
		t.Skipf("UT1 snapshot not found at %s (shared/data/ut1 beside the repository): %v", abs, err)
	}
	fw := startFirmware(t, withListsDir(t, abs))
	fw.waitEvent(t, 20*time.Second, "dns-lists-loaded", nil)
	gambling := dns.Fqdn(firstDomain(t, "gambling"))
	ns := func(zone string) string { return fw.lab.Namespace(lab.RoleClient(zone)) }
	box := map[string]string{"peda": "10.10.0.1:53", "admin": "10.20.0.1:53", "guest": "10.30.0.1:53"}
	tests := []struct {
		zone, name string
		qtype      uint16
		network    string
		rcode      int
		answer     string // substring of the answer section
		ede        string // substring of the EDE text; "" = none
	}{
		{"peda", lab.InternetHost, dns.TypeA, "udp", dns.RcodeSuccess, "203.0.113.10", ""},
		{"peda", lab.InternetHost, dns.TypeA, "tcp", dns.RcodeSuccess, "203.0.113.10", ""},
		{"peda", "bad.lab.test.", dns.TypeA, "udp", dns.RcodeNameError, "", "deny list of profile eleves"},
		{"peda", gambling, dns.TypeA, "udp", dns.RcodeNameError, "", "category gambling (UT1) of profile eleves"},
		{"guest", gambling, dns.TypeA, "udp", dns.RcodeNameError, "", "category gambling"},
		{"admin", gambling, dns.TypeA, "udp", dns.RcodeNameError, "", ""}, // forwarded: the lab's internet knows no such name
		{"peda", "use-application-dns.net.", dns.TypeA, "udp", dns.RcodeNameError, "", "resolver bypass"},
		{"admin", "use-application-dns.net.", dns.TypeA, "udp", dns.RcodeNameError, "", ""},
		{"peda", "www.google.com.", dns.TypeA, "udp", dns.RcodeNameError, "forcesafesearch.google.com.", ""},
		{"admin", "www.google.com.", dns.TypeA, "udp", dns.RcodeNameError, "", ""},
		{"admin", lab.AcademyHost, dns.TypeA, "udp", dns.RcodeSuccess, "203.0.113.100", ""},
		{"guest", lab.InternetHost, dns.TypeA, "udp", dns.RcodeSuccess, "203.0.113.10", ""},
	}
	for _, tt := range tests {
		r, err := dnsQuery(t, ns(tt.zone), box[tt.zone], tt.name, tt.qtype, tt.network)
		if err != nil {
			t.Errorf("%s %s (%s): %v", tt.zone, tt.name, tt.network, err)
			continue
		}
		var ans strings.Builder
		for _, rr := range r.Answer {
			ans.WriteString(rr.String() + "\n")
		}
		if r.Rcode != tt.rcode || !strings.Contains(ans.String(), tt.answer) || (tt.answer == "" && strings.Contains(ans.String(), "CNAME")) {
			t.Errorf("%s %s: %s with answer %q; want %s containing %q", tt.zone, tt.name, dns.RcodeToString[r.Rcode], ans.String(), dns.RcodeToString[tt.rcode], tt.answer)
		}
		if got := edeText(r); (tt.ede == "") != (got == "") || !strings.Contains(got, tt.ede) {
			t.Errorf("%s %s: EDE %q, want %q", tt.zone, tt.name, got, tt.ede)
		}
	}
	// No open resolver: from the ISP, the box's uplink address does not
	// answer DNS.
	isp := fw.lab.Namespace(lab.RoleISP("renater"))
	for _, network := range []string{"udp", "tcp"} {
		if r, err := dnsQuery(t, isp, "192.0.2.2:53", lab.InternetHost, dns.TypeA, network); err == nil {
			t.Errorf("query from the uplink side over %s answered:\n%s", network, r)
		}
	}
}

func TestLabDNSFailClosedUntilListsLoad(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	fw := startFirmware(t, withListsDir(t, dir))
	fw.waitEvent(t, 10*time.Second, "dns-lists-missing", nil)
	peda, admin := fw.lab.Namespace(lab.RoleClient("peda")), fw.lab.Namespace(lab.RoleClient("admin"))
	r, err := dnsQuery(t, peda, "10.10.0.1:53", lab.InternetHost, dns.TypeA, "udp")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeNameError || !strings.Contains(edeText(r), "lists not loaded") {
		t.Errorf("minors' zone without lists: %s %q, want NXDOMAIN, fail closed", dns.RcodeToString[r.Rcode], edeText(r))
	}
	r, err = dnsQuery(t, admin, "10.20.0.1:53", lab.InternetHost, dns.TypeA, "udp")
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("staff zone (fail_closed: false) without lists: %v %v", r, err)
	}
	// Lists arrive (a technician copies them); SIGHUP reloads.
	for name, body := range map[string]string{"gambling/domains": "casino.lab.test\n", "gambling/usage": "black\n"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mark := fw.mark()
	fw.cmd.Process.Signal(syscall.SIGHUP)
	fw.waitEventAfter(t, mark, 10*time.Second, "dns-lists-loaded", nil)
	r, err = dnsQuery(t, peda, "10.10.0.1:53", lab.InternetHost, dns.TypeA, "udp")
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("minors' zone once lists loaded: %v %v", r, err)
	}
	r, err = dnsQuery(t, peda, "10.10.0.1:53", "casino.lab.test.", dns.TypeA, "udp")
	if err != nil || !strings.Contains(edeText(r), "category gambling") {
		t.Errorf("gambling name once lists loaded: %v %v", r, err)
	}
}
