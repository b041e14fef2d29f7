package dnsfilter

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/ut1"
)

// TestListSwapUnderLoadNoErrorNoLeak swaps list versions while clients
// query without pause, and counts failed queries and blocked names that
// were answered: both must be zero.
func TestListSwapUnderLoadNoErrorNoLeak(t *testing.T) {
	var big strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&big, "filler%d.example.com.invalid\n", i)
	}
	dir1 := testLists(t, t.TempDir(), nil)
	dir2 := testLists(t, t.TempDir(), map[string]string{"gambling/domains": "casino.example\n" + big.String()})
	v1, err := ut1.ReadDir(dir1, loadOptions)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := ut1.ReadDir(dir2, loadOptions)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, dir1, nil)
	ts.waitLists(t)
	ts.f.limiter.setRate(0) // one client address, many queries: no limit here

	blocked := []string{"example.com.", "www.example.com.", "casino.example.", "doh.example.", "x.bad.example.org."}
	allowed := []string{"example.org.", "www.lib.example.net.", "kids.example.com.", "xexample.com."}
	var sent, errs, leaks atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			if w == 3 {
				c.Net = "tcp"
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				isBlocked := i%2 == 0
				name := allowed[i%len(allowed)]
				if isBlocked {
					name = blocked[i%len(blocked)]
				}
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				r, _, err := c.Exchange(m, ts.addrs["peda"])
				sent.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", name, err))
				case isBlocked && (r.Rcode != dns.RcodeNameError || len(r.Answer) > 0):
					leaks.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s answered: %s", name, r))
				case !isBlocked && (r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0):
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %s", name, dns.RcodeToString[r.Rcode]))
				}
			}
		})
	}
	swaps := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		l := v1
		if swaps%2 == 0 {
			l = v2
		}
		ts.f.swapLists(l, time.Now(), 0)
		swaps++
		time.Sleep(25 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d queries during %d list swaps: %d errors, %d unfiltered answers", sent.Load(), swaps, errs.Load(), leaks.Load())
	if errs.Load() != 0 || leaks.Load() != 0 {
		t.Errorf("%d errors and %d unfiltered answers during swaps; first: %v", errs.Load(), leaks.Load(), firstErr.Load())
	}
	if sent.Load() < 1000 {
		t.Errorf("only %d queries sent: not a sustained load", sent.Load())
	}
}
