package integration

import (
	"context"
	"testing"
	"time"

	"passerelle/pkg/lab"
)

// TestLabDHCPStarvationFlood is issue 12's DHCP starvation: a device of the
// peda zone sends DISCOVERs from a new random hardware address 20 times a
// second for 10 seconds, binding every address it is offered, while a new
// legitimate device asks for an address during the flood and another right
// after it. Both get one within seconds, the flood gets no more than the
// zone's new-client budget (the pool is not exhausted), and the starvation
// warning names the zone.
func TestLabDHCPStarvationFlood(t *testing.T) {
	const (
		floodCount    = 200
		floodInterval = 50 * time.Millisecond // 20 a second
		budgetBurst   = 60                    // dhcpd.DefaultBudget.NewBurst
		askWithin     = 6 * time.Second
	)
	ll := upLANLab(t, true)
	fw := ll.start(t)
	fw.waitEvent(t, 5*time.Second, "dhcp-serving", map[string]string{"zone": "peda"})
	var pool int
	for _, z := range ll.cfg.Zones {
		if z.Name == "peda" {
			pool = int(z.DHCP.RangeEnd.As4()[3]) - int(z.DHCP.RangeStart.As4()[3]) + 1
		}
	}
	if pool < 2*budgetBurst {
		t.Fatalf("peda's pool has %d addresses: too small for this test", pool)
	}
	raw, err := ll.lab.RawDHCP("peda")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mark := fw.mark()
	type floodDone struct {
		res lab.FloodResult
		err error
	}
	flood := make(chan floodDone, 1)
	floodStart := time.Now()
	go func() {
		res, err := raw.Flood(ctx, floodCount, floodInterval)
		flood <- floodDone{res, err}
	}()

	// A new device during the flood, once the budget is spent.
	time.Sleep(4 * time.Second)
	during := ll.dhcpClient(t, "peda", lab.RandomMAC())
	asked := time.Now()
	lease, err := during.Request(ctx)
	if err != nil {
		t.Fatalf("new device during the flood: no address: %v", err)
	}
	if took := time.Since(asked); took > askWithin {
		t.Errorf("new device during the flood got %s after %s, want within %s", lease.ACK.YourIPAddr, took, askWithin)
	} else {
		t.Logf("new device during the flood: %s in %s", lease.ACK.YourIPAddr, took.Round(time.Millisecond))
	}
	if time.Since(floodStart) > time.Duration(floodCount)*floodInterval {
		t.Error("the device was served after the flood ended, not during it")
	}

	fd := <-flood
	if fd.err != nil {
		t.Fatalf("flood: %v", fd.err)
	}
	t.Logf("flood: %d DISCOVERs from new addresses, %d OFFERs, %d ACKs (pool %d)", fd.res.Sent, fd.res.Offers, fd.res.Acks, pool)
	if fd.res.Sent != floodCount {
		t.Errorf("flood sent %d DISCOVERs, want %d", fd.res.Sent, floodCount)
	}
	// The burst, plus what the budget refills in 10 s (30 a minute).
	if max := budgetBurst + 10; fd.res.Acks > max || fd.res.Acks >= pool-1 {
		t.Errorf("the flood bound %d addresses, want at most %d of the %d", fd.res.Acks, max, pool)
	}

	// Right after the flood, another new device.
	after := ll.dhcpClient(t, "peda", lab.RandomMAC())
	asked = time.Now()
	if lease, err := after.Request(ctx); err != nil {
		t.Fatalf("new device after the flood: no address: %v", err)
	} else if took := time.Since(asked); took > askWithin {
		t.Errorf("new device after the flood got %s after %s, want within %s", lease.ACK.YourIPAddr, took, askWithin)
	}

	// The warning names the zone; the pool never filled.
	fw.waitEventAfter(t, mark, 10*time.Second, "health-raised", map[string]string{"code": "dhcp-starvation:peda"})
	if rs := fw.log.find(mark, "health-raised", map[string]string{"code": "dhcp-pool-full:peda"}); len(rs) > 0 {
		t.Errorf("the pool filled: %v", rs[0])
	}
	for _, other := range []string{"admin", "guest"} {
		if rs := fw.log.find(mark, "health-raised", map[string]string{"code": "dhcp-starvation:" + other}); len(rs) > 0 {
			t.Errorf("starvation warning for %s, which was not flooded", other)
		}
	}
}
