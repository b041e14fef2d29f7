package dhcpd

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"passerelle/pkg/box"
)

// TestNamedLeases: the read-only view the DNS filter serves names from
// holds the live leases with a host name, and its version moves with the
// table.
func TestNamedLeases(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := New(box.Deps{Log: discardLog(), Now: clock.now}, Options{LeaseDir: dir, Limits: unlimited()})
	if err := s.Apply(context.Background(), &Plan{LeaseDir: dir, Zones: []ZonePlan{testZone()}}); err != nil {
		t.Fatal(err)
	}
	v0 := s.LeasesVersion()
	hs := &harness{t: t, clock: clock, h: s.handler("test")}
	_, ack := hs.dora(mac(1), dhcpv4.WithOption(dhcpv4.OptHostName("Laptop-Jean")))
	if ack == nil {
		t.Fatal("no lease")
	}
	hs.dora(mac(2)) // no host name: not listed
	got := s.NamedLeases()
	if len(got) != 1 || got[0].Zone != "test" || got[0].Hostname != "Laptop-Jean" || !bytes.Equal(got[0].MAC, mac(1)) ||
		got[0].Addr != mustAddr(t, ack.YourIPAddr) {
		t.Fatalf("NamedLeases = %+v, want Laptop-Jean's lease of %s", got, ack.YourIPAddr)
	}
	if s.LeasesVersion() == v0 {
		t.Error("LeasesVersion did not change with the table")
	}
	got[0].MAC[0] ^= 0xff // a copy: the table is not touched
	if again := s.NamedLeases(); !bytes.Equal(again[0].MAC, mac(1)) {
		t.Error("NamedLeases shares memory with the lease table")
	}
	clock.add(2 * time.Hour)
	if got := s.NamedLeases(); len(got) != 0 {
		t.Errorf("expired leases listed: %+v", got)
	}
}
