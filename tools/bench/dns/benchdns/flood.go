package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// flood is the memory benchmark of issue 12: an upstream that answers
// every name of a domain with about -answer bytes (over TCP; over UDP it
// says "truncated", so the resolver asks again over TCP), Passerelle's
// DNS filter alone (benchdns serve, in a child process), and a client
// asking -names distinct names, half over UDP, half over TCP. It prints
// the child's resident memory before, at its peak and every 10 s for
// -after once the flood is over.
//
//	benchdns flood -names 4800 -answer 60000 -after 60s
func flood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	names := fs.Int("names", 4800, "distinct names asked")
	answer := fs.Int("answer", 60000, "bytes of each answer")
	workers := fs.Int("c", 64, "queries in flight")
	after := fs.Duration("after", time.Minute, "how long to watch memory once the flood is over")
	memLimit := fs.Int64("memory-limit", 512<<20, "the child's soft memory limit in bytes (the daemon sets half of MemTotal: 512 MiB on a 1 GB board)")
	bin := fs.String("server-bin", "", "benchdns binary serving (default this one); with -legacy, one built before issue 12")
	legacy := fs.Bool("legacy", false, "the server predates issue 12: loopback upstream in its config, no -upstream or -memory-limit flag")
	fs.Parse(args)
	if *bin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = self
	}

	// The upstream, on loopback.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		return err
	}
	h := bigAnswers(*answer)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go s.ActivateAndServe()
		defer s.Shutdown()
	}
	upstream := pc.LocalAddr().String()

	// The DNS filter, in a child whose memory is measured alone.
	dir, err := os.MkdirTemp("", "dnsflood")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port := freeUDPTCPPort()
	cfgUpstream := "192.0.2.53:53"
	if *legacy {
		cfgUpstream = upstream
	}
	cfg := fmt.Sprintf(`version: 1
identity: {uai: 0599999Y, name: Bench, academy: lille}
uplinks: [{name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}]
zones: [{name: admin, kind: administrative, interfaces: [lan0], subnet: 10.20.0.0/24, address: 10.20.0.1}]
dns:
  upstreams: [{address: "%s"}]
  lists: {directory: %s}
`, cfgUpstream, filepath.Join(dir, "lists"))
	if err := os.WriteFile(filepath.Join(dir, "box.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	serveArgs := []string{"serve", "-config", filepath.Join(dir, "box.yaml"), "-listen", "127.0.0.1", "-port", strconv.Itoa(port)}
	if !*legacy {
		serveArgs = append(serveArgs, "-upstream", upstream, "-memory-limit", strconv.FormatInt(*memLimit, 10))
	}
	child := exec.Command(*bin, serveArgs...)
	child.Stderr = nil
	if err := child.Start(); err != nil {
		return err
	}
	defer child.Process.Kill()
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitServing(server, 10*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	idle := rss(child.Process.Pid)
	fmt.Printf("server pid %d, answers of %d bytes, %d names, %d in flight\n", child.Process.Pid, *answer, *names, *workers)
	fmt.Printf("idle:            RSS %6.1f MB\n", mb(idle))

	// The flood, with the peak sampled every 50 ms.
	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rss(child.Process.Pid); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	start := time.Now()
	next := make(chan int)
	var failed, full atomic.Int64
	var wg sync.WaitGroup
	for w := range *workers {
		// Each worker is a client of its own (127.0.1.w): the filter's
		// per-client TCP budget would otherwise refuse one client's 64.
		from := net.IPv4(127, 0, 1, byte(1+w%250))
		wg.Go(func() {
			for i := range next {
				c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: from}}}
				if i%2 == 1 {
					c.Net = "tcp"
					c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
				}
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("n%d.flood.example.", i), dns.TypeTXT)
				r, _, err := c.Exchange(m, server)
				switch {
				case err != nil || r.Rcode != dns.RcodeSuccess:
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "first failure: %s %v %v\n", c.Net, err, r)
					}
				case r.Len() >= *answer:
					full.Add(1)
				}
			}
		})
	}
	for i := range *names {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	fmt.Printf("flood:           %d queries in %s, %d full answers over TCP, %d failed\n", *names, took.Round(time.Millisecond), full.Load(), failed.Load())
	fmt.Printf("end of flood:    RSS %6.1f MB\n", mb(rss(child.Process.Pid)))
	end := time.Now()
	for s := 10 * time.Second; s <= *after; s += 10 * time.Second {
		time.Sleep(time.Until(end.Add(s)))
		fmt.Printf("after %3ds:      RSS %6.1f MB\n", int(s/time.Second), mb(rss(child.Process.Pid)))
	}
	close(stop)
	sampler.Wait()
	fmt.Printf("peak:            RSS %6.1f MB (VmHWM %.1f MB)\n", mb(peak.Load()), mb(status(child.Process.Pid, "VmHWM")))
	return nil
}

// bigAnswers answers every query with TXT records totalling about size
// bytes, TTL one hour; over UDP, an empty truncated answer.
func bigAnswers(size int) dns.Handler {
	chunk := strings.Repeat("x", 250)
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		name := req.Question[0].Name
		for n := 0; n < size; n += 8 * 251 {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600},
				Txt: []string{chunk, chunk, chunk, chunk, chunk, chunk, chunk, chunk}})
		}
		w.WriteMsg(m)
	})
}

func freeUDPTCPPort() int {
	for {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
}

func waitServing(server string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		m := new(dns.Msg)
		m.SetQuestion("ready.flood.example.", dns.TypeA)
		_, _, err := (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, m, server)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not serving after %s", server, timeout)
}

// rss is a process's resident memory in bytes (VmRSS).
func rss(pid int) int64 { return status(pid, "VmRSS") }

func status(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func mb(b int64) float64 { return float64(b) / 1e6 }
