package dhcpd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fuzzSeeds are well-formed messages of every type the server handles, for
// the fuzzer to mutate (more seeds live in testdata/fuzz/FuzzHandle).
func fuzzSeeds() [][]byte {
	server := net.IPv4(10, 0, 0, 1)
	hw := mac(1)
	disc, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptHostName("pc-1")))
	offer, _ := dhcpv4.NewReplyFromRequest(disc, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 10)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	ack, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 10)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	renew, _ := dhcpv4.NewRenewFromAck(ack)
	rel, _ := dhcpv4.NewReleaseFromACK(ack)
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 10))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	inf, _ := dhcpv4.NewInform(hw, net.IPv4(10, 0, 0, 200))
	reboot, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(2)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 11))))
	return [][]byte{disc.ToBytes(), req.ToBytes(), renew.ToBytes(), rel.ToBytes(), dec.ToBytes(), inf.ToBytes(), reboot.ToBytes()}
}

// FuzzHandle feeds arbitrary packets to a zone's handler that already holds
// leases, a reservation and pending offers. Whatever the input, the handler
// must not panic, the lease table must keep its invariants, and the stored
// file must decode to exactly the table.
func FuzzHandle(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, uint16(0))
		f.Add(s, uint16(7200))
	}
	f.Fuzz(func(t *testing.T, pkt []byte, advance uint16) {
		z := testZone()
		z.Reserved = []Reservation{{MAC: hw6(mac(0x42)), Addr: addr("10.0.0.12")}}
		st := &memStore{}
		hs := newHarness(t, z, st, DefaultLimits)
		hs.mustLease(mac(1))
		hs.mustLease(mac(0x42))
		d, _ := dhcpv4.NewDiscovery(mac(3))
		hs.send(d)
		hs.clock.add(time.Duration(advance) * time.Second)

		for _, src := range []netip.AddrPort{clientSrc, netip.MustParseAddrPort("10.0.0.10:68")} {
			if r, ok := hs.h.Handle(pkt, src); ok {
				if _, err := dhcpv4.FromBytes(r.Data); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
				if !r.Dst.IsValid() || r.Dst.Port() != clientPort {
					t.Fatalf("reply to %s", r.Dst)
				}
			}
			hs.checkInvariants()
		}
		ls, err := decodeLeases(z.Name, st.data)
		if err != nil {
			t.Fatalf("stored leases do not decode: %v", err)
		}
		reload := newTable(z)
		if skipped := reload.load(ls, hs.clock.now()); skipped != 0 {
			t.Fatalf("stored leases: %d would be dropped at load", skipped)
		}
		got, want := reload.records(), hs.h.t.records()
		if len(got) != len(want) {
			t.Fatalf("store holds %d records, table %d", len(got), len(want))
		}
		for i := range got {
			if !got[i].Expiry.Equal(want[i].Expiry) || got[i].Addr != want[i].Addr || got[i].MAC != want[i].MAC {
				t.Fatalf("stored %+v, table %+v", got[i], want[i])
			}
		}
	})
}
