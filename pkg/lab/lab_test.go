package lab_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"passerelle/pkg/lab"
)

func TestLabUpDown(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := upLab(t, schoolSpec())

	roles := []string{"box", "internet", "academy", "isp:renater", "isp:backup", "client:peda", "client:admin"}
	for _, role := range roles {
		name := l.Namespace(role)
		if !strings.HasPrefix(name, "pl"+l.ID+"-") {
			t.Fatalf("Namespace(%q) = %q, want pl%s-*", role, name, l.ID)
		}
		if _, err := os.Stat(filepath.Join(lab.NetnsDir, name)); err != nil {
			t.Errorf("namespace %s (%s): %v", name, role, err)
		}
	}
	if got := l.Namespace("isp:unknown"); got != "" {
		t.Errorf("Namespace of unknown role = %q", got)
	}
	if got := len(l.Namespaces()); got != len(roles) {
		t.Errorf("Namespaces() has %d roles, want %d", got, len(roles))
	}

	box := l.Namespace("box")
	boxLinksUp := func() bool {
		up := map[string]bool{}
		for _, link := range linksIn(t, box) {
			a := link.Attrs()
			up[a.Name] = a.Flags&net.FlagUp != 0 && a.OperState == netlink.OperUp
		}
		return up["wan0"] && up["wan1"] && up["lan0"] && up["lan1"]
	}
	// Operational state follows carrier asynchronously (linkwatch).
	if !waitFor(5*time.Second, boxLinksUp) {
		for _, link := range linksIn(t, box) {
			t.Logf("box link %s: flags %v oper %v", link.Attrs().Name, link.Attrs().Flags, link.Attrs().OperState)
		}
		t.Fatal("box interfaces wan0 wan1 lan0 lan1 not all up")
	}

	// Play the firmware: address the uplinks and route via renater.
	ipExec(t, box, "ip", "addr", "add", "192.0.2.2/30", "dev", "wan0")
	ipExec(t, box, "ip", "addr", "add", "192.0.2.6/30", "dev", "wan1")
	ipExec(t, box, "ip", "route", "add", "default", "via", "192.0.2.1")
	ipExec(t, box, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	client := lab.HTTPClient(box)
	get := func(server net.IP, want string) {
		t.Helper()
		resp, err := client.Get("http://" + server.String() + "/")
		if err != nil {
			t.Fatalf("GET from box: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("GET http://%s/: %s %q, want 200 %q", server, resp.Status, body, want)
		}
	}
	inet, acad := net.IP(l.InternetServer().AsSlice()), net.IP(l.AcademyServer().AsSlice())
	get(inet, lab.InternetHTTPBody)
	get(acad, lab.AcademyHTTPBody)

	resolve := func(network, name string) *dns.Msg {
		t.Helper()
		conn, err := lab.DialContext(withTimeout(t, 5*time.Second), box, network, net.JoinHostPort(inet.String(), "53"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		r, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn})
		if err != nil {
			t.Fatalf("DNS %s %s: %v", network, name, err)
		}
		return r
	}
	for _, network := range []string{"udp", "tcp"} {
		for name, want := range map[string]net.IP{lab.InternetHost: inet, lab.AcademyHost: acad} {
			r := resolve(network, name)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Answer[0].(*dns.A).A.Equal(want) {
				t.Errorf("DNS/%s %s: %v", network, name, r)
			}
		}
		if r := resolve(network, "missing.lab.test."); r.Rcode != dns.RcodeNameError {
			t.Errorf("DNS/%s missing.lab.test.: rcode %s, want NXDOMAIN", network, dns.RcodeToString[r.Rcode])
		}
	}

	// Fail over to the backup uplink and check traffic goes through it.
	backupISP := l.Namespace("isp:backup")
	before := linkStats(t, backupISP, "box").RxPackets
	ipExec(t, box, "ip", "route", "replace", "default", "via", "192.0.2.5")
	get(inet, lab.InternetHTTPBody)
	if after := linkStats(t, backupISP, "box").RxPackets; after <= before {
		t.Errorf("backup ISP received no packets (%d -> %d) after failover", before, after)
	}

	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	requireNoArtifacts(t, l.ID)
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestClientReachesGatewayAddress(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := upLab(t, schoolSpec())
	box, peda := l.Namespace("box"), l.Namespace("client:peda")
	ipExec(t, box, "ip", "addr", "add", "10.10.0.1/24", "dev", "lan0")
	ctx := withTimeout(t, 10*time.Second)

	t.Run("tcp", func(t *testing.T) {
		ln, err := lab.Listen(box, "tcp", "10.10.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			// Echo the peer's address so the client can check its source.
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "%s\n", conn.RemoteAddr().(*net.TCPAddr).IP)
		}()
		conn, err := lab.DialContext(ctx, peda, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(line); got != "10.10.0.100" {
			t.Errorf("box saw the client as %s, want 10.10.0.100", got)
		}
	})

	t.Run("udp", func(t *testing.T) {
		pc, err := lab.ListenPacket(box, "udp", "10.10.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		conn, err := lab.DialContext(ctx, peda, "udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != "ping" || from.(*net.UDPAddr).IP.String() != "10.10.0.100" {
			t.Errorf("box got %q from %v", buf[:n], from)
		}
	})

	t.Run("icmp", func(t *testing.T) {
		// A raw ICMP socket opened in the client namespace: ping without
		// depending on a ping binary.
		var pc *icmp.PacketConn
		err := lab.RunInNamespace(peda, func() error {
			var err error
			pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		echo := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x1a2b, Seq: 1, Data: []byte("passerelle")}}
		b, err := echo.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(b, &net.IPAddr{IP: net.IPv4(10, 10, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no echo reply: %v", err)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue // the raw socket sees every ICMP message
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == 0x1a2b && from.String() == "10.10.0.1" {
				return
			}
		}
	})

	// The other zone is not addressed on the box: it must not answer.
	t.Run("admin zone unaddressed", func(t *testing.T) {
		ctx := withTimeout(t, 300*time.Millisecond)
		if conn, err := lab.DialContext(ctx, l.Namespace("client:admin"), "tcp", "10.20.0.1:9"); err == nil {
			conn.Close()
			t.Error("connected to an address the box does not have")
		}
	})
}

// TestConcurrentUp builds several labs at once, as parallel tests of the
// firmware do, and checks they do not step on each other.
func TestConcurrentUp(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const n = 4
	var wg sync.WaitGroup
	labs := make([]*lab.Lab, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { labs[i], errs[i] = lab.Up(t.Context(), schoolSpec(), testLogger(t)) })
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Up #%d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() {
			if err := labs[i].Down(); err != nil {
				t.Errorf("Down %s: %v", labs[i].ID, err)
			}
			requireNoArtifacts(t, labs[i].ID)
		})
		if ids[labs[i].ID] {
			t.Errorf("duplicate lab ID %s", labs[i].ID)
		}
		ids[labs[i].ID] = true
	}
	runs, err := lab.List()
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for _, r := range runs {
		if ids[r.ID] {
			listed++
			if !r.Alive || r.PID != os.Getpid() || len(r.Present) != len(r.Namespaces) {
				t.Errorf("List entry for %s: %+v", r.ID, r)
			}
		}
	}
	if listed != len(ids) {
		t.Errorf("List shows %d of our %d runs", listed, len(ids))
	}
	// Our own runs are alive: Cleanup must leave them alone.
	removed, err := lab.Cleanup(testLogger(t))
	if err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	for _, r := range removed {
		for id := range ids {
			if strings.Contains(r, id) {
				t.Errorf("Cleanup removed %s of a live run", r)
			}
		}
	}
}

// TestUpCanceledLeavesNothing cancels Up at various points: it either
// completes or fails with the context's error, and a failed Up leaves
// nothing behind. Not parallel, so that every run of this process seen by
// List is one of ours.
func TestUpCanceledLeavesNothing(t *testing.T) {
	requireRoot(t)
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		l, err := lab.Up(ctx, schoolSpec(), testLogger(t))
		cancel()
		if err == nil {
			t.Logf("timeout %v: Up completed", d)
			if err := l.Down(); err != nil {
				t.Errorf("Down: %v", err)
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("timeout %v: Up failed with %v, want the context's error", d, err)
		}
		runs, err := lab.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.PID == os.Getpid() {
				t.Errorf("timeout %v: failed Up left %+v", d, r)
			}
		}
	}
}

// TestCleanupRunRemovesLiveRun: `lab down <ID>` must work on a run whose
// creator is alive, and the creator's own Down must cope afterwards.
func TestCleanupRunRemovesLiveRun(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := upLab(t, schoolSpec())
	removed, err := lab.CleanupRun(testLogger(t), l.ID)
	if err != nil {
		t.Fatalf("CleanupRun: %v", err)
	}
	if len(removed) != len(l.Namespaces())+1 {
		t.Errorf("CleanupRun removed %v, want %d namespaces and the state file", removed, len(l.Namespaces()))
	}
	requireNoArtifacts(t, l.ID)
	if err := l.Down(); err != nil {
		t.Errorf("Down after CleanupRun: %v", err)
	}
	if removed, err := lab.CleanupRun(testLogger(t), l.ID); err != nil || len(removed) > 0 {
		t.Errorf("second CleanupRun: %v, %v", removed, err)
	}
	if _, err := lab.CleanupRun(nil, "../../etc"); err == nil {
		t.Error("CleanupRun accepted a malformed ID")
	}
}
