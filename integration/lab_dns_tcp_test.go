package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/lab"
)

// TestLabDNSTCPFloodLeavesOtherZonesServed is issue 12's acceptance test
// for DNS over TCP: the daemon starts with a file limit below the flood
// (1024, 2048 hard: init's is 1024/4096) and raises what it may; a guest
// client opens
// 3,000 TCP connections to port 53 and holds them, while a client of
// another zone resolves names that need the upstreams, over UDP and TCP,
// without a single error or SERVFAIL. The guest's connections beyond its
// budget are closed at once and the refusals logged.
func TestLabDNSTCPFloodLeavesOtherZonesServed(t *testing.T) {
	needRoot(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	fw := labFor(t, []byte(readDemo(t)), nil)
	// fw.launch, under init's file limit.
	stateDir := t.TempDir()
	args := []string{"--nofile=1024:2048", "--", bins(t).passerelle, "run", "--config", fw.path, "--log-format", "json", "--log-level", "debug",
		"--dhcp-lease-dir", filepath.Join(stateDir, "dhcp"), "--set-clock", "never"}
	cmd := exec.Command(prlimit, args...)
	fw.proc = startProc(t, cmd, &eventLog{}, func(c *exec.Cmd) error { return lab.StartCommand(fw.lab.Namespace(lab.RoleBox), c) })
	fw.stateDir = stateDir
	// The hard limit goes up to fs.nr_open where the daemon may
	// (CAP_SYS_RESOURCE: the board's init); the soft one to the hard in
	// any case. The TCP budgets hold either way.
	r := fw.proc.waitRecord(t, 0, 10*time.Second, "file-limit", nil)
	if soft, _ := strconv.Atoi(r.str("soft")); soft < 2048 || r.str("soft") != r.str("hard") {
		t.Fatalf("file limit not raised: %v", r)
	}
	t.Logf("file limit: soft %s hard %s (was %s/%s) %s", r.str("soft"), r.str("hard"), r.str("was_soft"), r.str("was_hard"), r.str("hard_not_raised"))
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				t.Logf("daemon: %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}

	guest, peda := fw.lab.Namespace(lab.RoleClient("guest")), fw.lab.Namespace(lab.RoleClient("peda"))
	const flood = 3000
	var (
		mu       sync.Mutex
		held     []net.Conn
		dialErrs = map[string]int{}
		wg       sync.WaitGroup
		next     = make(chan struct{}, flood)
		start    = time.Now()
	)
	for range flood {
		next <- struct{}{}
	}
	close(next)
	for range 64 {
		wg.Go(func() {
			for range next {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				c, err := lab.DialContext(ctx, guest, "tcp", "10.30.0.1:53")
				cancel()
				if err != nil {
					mu.Lock()
					dialErrs[errKind(err)]++
					mu.Unlock()
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		})
	}
	release := func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		held = nil
		mu.Unlock()
	}
	defer release()
	dialed := make(chan struct{})
	go func() { wg.Wait(); close(dialed) }()

	// While the guest dials and holds: names only the upstreams know
	// (never cached), from the pedagogical zone, over UDP and TCP.
	var failures []string
	queries := 0
	flooding := func() bool {
		select {
		case <-dialed:
			return false
		default:
			return time.Since(start) < 60*time.Second
		}
	}
	for i := 0; i < 40 || flooding(); i++ {
		for _, network := range []string{"udp", "tcp"} {
			name := fmt.Sprintf("flood-%d-%s.%s", i, network, lab.Domain)
			if i%4 == 0 {
				name = lab.InternetHost
			}
			queries++
			m, err := dnsQuery(t, peda, "10.10.0.1:53", dns.Fqdn(name), dns.TypeA, network)
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s over %s: %v", name, network, err))
			case m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError:
				failures = append(failures, fmt.Sprintf("%s over %s: %s", name, network, dns.RcodeToString[m.Rcode]))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-dialed
	mu.Lock()
	n := len(held)
	mu.Unlock()
	t.Logf("guest connected %d of %d in %s (dial errors: %v); peda: %d queries, %d failures", n, flood, time.Since(start).Round(time.Millisecond), dialErrs, queries, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d of %d queries failed during the flood:\n%s", len(failures), queries, strings.Join(failures, "\n"))
	}
	// The guest's refusals are counted and logged (rate-limited).
	rec := fw.proc.waitRecord(t, 0, 10*time.Second, "dns-tcp-refused", map[string]string{"zone": "guest", "reason": "client"})
	t.Logf("refusal logged: refused=%s limit=%s", rec.str("refused"), rec.str("limit"))
	// The guest itself: UDP while it holds its TCP budget, TCP again once
	// it lets go.
	// (The guest zone fails closed until the lists are loaded: NXDOMAIN
	// is an answer too.)
	if m, err := dnsQuery(t, guest, "10.30.0.1:53", lab.InternetHost, dns.TypeA, "udp"); err != nil || m.Rcode == dns.RcodeServerFailure {
		t.Errorf("guest over UDP with its connections held: %v %v", m, err)
	}
	release()
	waitUntil(t, "the guest served over TCP again", 10*time.Second, func() bool {
		m, err := dnsQuery(t, guest, "10.30.0.1:53", lab.InternetHost, dns.TypeA, "tcp")
		return err == nil && m.Rcode != dns.RcodeServerFailure
	})
	t.Logf("done %s after the flood started", time.Since(start).Round(time.Millisecond))
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timeout"
	}
	return err.Error()
}
