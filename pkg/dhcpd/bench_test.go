package dhcpd

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// bigZone is a /16 zone: the largest the config allows, 65,270 pool
// addresses.
func bigZone() ZonePlan {
	z := testZone()
	z.Subnet = netip.MustParsePrefix("10.0.0.0/16")
	z.RangeStart, z.RangeEnd = addr("10.0.0.10"), addr("10.0.255.253")
	return z
}

// fill binds n clients directly in the table, expiring at now+ttl.
func fill(b *testing.B, hs *harness, n int, ttl time.Duration) {
	b.Helper()
	z := hs.h.zone
	z.LeaseTime = ttl
	hs.h.t.zone.LeaseTime = ttl
	for i := range n {
		a, ok := hs.h.t.choose(hw6(mac(1_000_000+i)), netip.Addr{}, hs.clock.now())
		if !ok {
			b.Fatalf("pool full after %d", i)
		}
		if _, err := hs.h.t.bind(hw6(mac(1_000_000+i)), a, "", hs.clock.now()); err != nil {
			b.Fatal(err)
		}
	}
	hs.h.t.zone.LeaseTime = z.LeaseTime
}

// exchange is one DISCOVER/OFFER/REQUEST/ACK of hw (client i) straight
// through the handler: hs.dora checks the lease table's invariants at
// every message, which would dominate what a benchmark measures.
func exchange(b *testing.B, hs *harness, hw net.HardwareAddr, i int) {
	d, _ := dhcpv4.NewDiscovery(hw)
	r, ok := hs.h.Handle(d.ToBytes(), clientSrc)
	if !ok {
		b.Fatalf("no offer for client %d", i)
	}
	offer, _ := dhcpv4.FromBytes(r.Data)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	if _, ok := hs.h.Handle(req.ToBytes(), clientSrc); !ok {
		b.Fatalf("no ack for client %d", i)
	}
}

func benchDORA(b *testing.B, hs *harness, first int) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		hs.clock.add(time.Millisecond)
		exchange(b, hs, mac(first+i), i)
	}
}

// BenchmarkDORASchool is a whole DISCOVER/OFFER/REQUEST/ACK in a /24 zone
// whose 200 devices come back again and again (a school day), lease store
// in memory: the handler's own cost, encoding of the lease file included,
// its fsync excluded (BenchmarkLeaseFileSave).
func BenchmarkDORASchool(b *testing.B) {
	hs := newHarness(b, testZone(), nil, unlimited())
	hs.h.zone.RangeEnd, hs.h.t.zone.RangeEnd = addr("10.0.0.253"), addr("10.0.0.253")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		hs.clock.add(time.Millisecond)
		exchange(b, hs, mac(i%200), i)
	}
}

// BenchmarkDORAReclaimFullPool is the same when every address of the /16
// has an expired lease of another client: each allocation reclaims the
// oldest.
func BenchmarkDORAReclaimFullPool(b *testing.B) {
	z := bigZone()
	hs := newHarness(b, z, nil, unlimited())
	fill(b, hs, z.PoolSize(), time.Minute)
	hs.clock.add(time.Hour)
	benchDORA(b, hs, 0)
}

// BenchmarkDiscoverExhaustedPool is a DISCOVER from a new client when the
// /16 pool is full of live leases: the flood-of-random-MACs case.
func BenchmarkDiscoverExhaustedPool(b *testing.B) {
	z := bigZone()
	hs := newHarness(b, z, nil, unlimited())
	fill(b, hs, z.PoolSize(), 24*time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d, _ := dhcpv4.NewDiscovery(mac(i))
		if _, ok := hs.h.Handle(d.ToBytes(), clientSrc); ok {
			b.Fatal("offer from a full pool")
		}
	}
}

// BenchmarkLeaseFileSave is one atomic write (temp file, fsync, rename,
// fsync of the directory) of a zone's lease file, as done before each ACK.
func BenchmarkLeaseFileSave(b *testing.B) {
	for _, n := range []int{250, 4000} {
		b.Run(map[int]string{250: "leases=250", 4000: "leases=4000"}[n], func(b *testing.B) {
			z := bigZone()
			hs := newHarness(b, z, nil, unlimited())
			fill(b, hs, n, time.Hour)
			st := fileStore{path: filepath.Join(b.TempDir(), "test.json")}
			data, _ := encodeLeases(z.Name, hs.h.t.records())
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				data, err := encodeLeases(z.Name, hs.h.t.records())
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Save(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLeaseFileBytes measures the bytes written to the lease file
// per lease granted (B/lease) when 200 devices of a /24 zone get and renew
// their leases at 20 ACKs a second, the rate of the starvation flood of
// issue 12: written at every ACK (every-ack, the behaviour before), or at
// most once per DefaultSaveEvery (batched, the behaviour now).
func BenchmarkLeaseFileBytes(b *testing.B) {
	for _, c := range []struct {
		name  string
		every time.Duration
	}{{"every-ack", 0}, {"batched", DefaultSaveEvery}} {
		b.Run(c.name, func(b *testing.B) {
			z := testZone()
			z.RangeEnd = addr("10.0.0.253")
			st := &memStore{}
			var due time.Time
			var flush func()
			cfg := testConfig(unlimited())
			cfg.saveEvery = c.every
			var hs *harness
			cfg.schedule = func(d time.Duration, f func()) { due, flush = hs.clock.now().Add(d), f }
			hs = newHarnessWith(b, z, st, cfg)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				hs.clock.add(50 * time.Millisecond)
				if flush != nil && !hs.clock.now().Before(due) {
					f := flush
					flush = nil
					f()
				}
				exchange(b, hs, mac(i%200), i)
			}
			hs.h.Flush() // shutdown
			b.ReportMetric(float64(st.bytes)/float64(b.N), "B/lease")
			b.ReportMetric(float64(st.saves)/float64(b.N), "writes/lease")
		})
	}
}
