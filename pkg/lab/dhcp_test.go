package lab_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

func TestSpecFromConfigServesDHCPUplinks(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`version: 1
identity: {uai: 0599999Y, name: Test, academy: lille}
uplinks:
  - {name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}
  - {name: backup4g, interface: wwan0, addressing: dhcp}
zones:
  - {name: admin, kind: administrative, interfaces: [lan1], subnet: 10.20.0.0/24, address: 10.20.0.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := lab.SpecFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := s.Uplinks[1]
	if u.DHCP == nil || u.BoxAddr != netip.MustParsePrefix("100.64.2.10/24") || u.Gateway != netip.MustParseAddr("100.64.2.1") {
		t.Errorf("dhcp uplink spec %+v", u)
	}
	if s.Uplinks[0].DHCP != nil {
		t.Error("the static uplink got a DHCP server")
	}
}

// TestISPServesDHCP gets a lease from a DHCP uplink's ISP with an
// ordinary client in the box namespace, then sees the server offer the
// address a test sets.
func TestISPServesDHCP(t *testing.T) {
	requireRoot(t)
	spec := schoolSpec()
	spec.Uplinks[1] = lab.UplinkSpec{Name: "backup", Interface: "wan1", BoxAddr: netip.MustParsePrefix("100.64.2.10/24"),
		Gateway: netip.MustParseAddr("100.64.2.1"), DHCP: &lab.DHCPSpec{LeaseTime: 30 * time.Second}}
	l := upLab(t, spec)
	srv := l.DHCPServer("backup")
	if srv == nil || l.DHCPServer("renater") != nil {
		t.Fatal("DHCP servers: want one, for the backup only")
	}
	var c *nclient4.Client
	err := lab.RunInNamespace(l.Namespace(lab.RoleBox), func() error {
		var err error
		c, err = nclient4.New("wan1", nclient4.WithTimeout(2*time.Second))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	ack := lease.ACK
	if !ack.YourIPAddr.Equal(netip.MustParseAddr("100.64.2.10").AsSlice()) || ack.IPAddressLeaseTime(0) != 30*time.Second ||
		len(ack.Router()) != 1 || !ack.Router()[0].Equal(netip.MustParseAddr("100.64.2.1").AsSlice()) {
		t.Errorf("ACK: %s", ack.Summary())
	}
	srv.SetAddress(netip.MustParseAddr("100.64.2.20"))
	lease, err = c.Request(ctx)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if !lease.ACK.YourIPAddr.Equal(netip.MustParseAddr("100.64.2.20").AsSlice()) {
		t.Errorf("after SetAddress: %s", lease.ACK.Summary())
	}
	var types []dhcpv4.MessageType
	for _, ex := range srv.Exchanges() {
		types = append(types, ex.Reply)
	}
	if len(types) != 4 || types[0] != dhcpv4.MessageTypeOffer || types[1] != dhcpv4.MessageTypeAck {
		t.Errorf("server replies %v", types)
	}
}
