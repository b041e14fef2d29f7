package integration

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
	"passerelle/pkg/timesync"
)

// These tests check the LAN services (DHCP, NTP) of the real firmware from
// clients in the zones of a lab.

// reservedMAC and reservedAddr are added to the peda zone of the demo
// config for the tests.
const (
	reservedMAC  = "02:00:00:00:00:42"
	reservedAddr = "10.10.0.5"
)

// lanLab is a lab for the demo config (with a reservation in peda) whose
// zone clients may have no address, and the lease directory the daemon
// uses.
type lanLab struct {
	lab      *lab.Lab
	cfg      *config.Config
	path     string
	stateDir string // the daemon's persistent state (its /perm)
	leaseDir string // stateDir/dhcp, where launch puts the lease files
}

func upLANLab(t *testing.T, unaddressed bool) *lanLab {
	t.Helper()
	data := readDemo(t)
	peda := "    address: 10.10.0.1\n"
	if !strings.Contains(data, peda) {
		t.Fatal("demo.yaml changed: no peda address line to add the reservation after")
	}
	edited := strings.Replace(data, peda, peda+"    dhcp:\n      reservations:\n        - {name: printer-cdi, mac: \""+reservedMAC+"\", address: "+reservedAddr+"}\n", 1)
	fw := labFor(t, []byte(edited), func(spec *lab.Spec) {
		for i := range spec.Zones {
			spec.Zones[i].Unaddressed = unaddressed
		}
	})
	state := filepath.Join(t.TempDir(), "perm")
	return &lanLab{lab: fw.lab, cfg: fw.cfg, path: fw.path, stateDir: state, leaseDir: filepath.Join(state, "dhcp")}
}

// start runs the firmware in the lab's box namespace with the lab's lease
// directory; it never sets the clock (the lab shares the host's).
func (ll *lanLab) start(t *testing.T) *firmware {
	t.Helper()
	fw := &firmware{lab: ll.lab, cfg: ll.cfg, path: ll.path}
	fw.launch(t, ll.stateDir)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	return fw
}

// stop ends the daemon as init would at shutdown.
func (fw *firmware) stop(t *testing.T) {
	t.Helper()
	fw.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := fw.wait(10 * time.Second); !ok {
		t.Fatal("firmware did not stop within 10s of SIGTERM")
	}
}

// dhcpClient opens a DHCP client on eth0 of a zone's client namespace,
// with hardware address hw (nil: the interface's own).
func (ll *lanLab) dhcpClient(t *testing.T, zone string, hw net.HardwareAddr) *nclient4.Client {
	t.Helper()
	opts := []nclient4.ClientOpt{nclient4.WithTimeout(time.Second), nclient4.WithRetry(4)}
	if hw != nil {
		opts = append(opts, nclient4.WithHWAddr(hw))
	}
	var c *nclient4.Client
	err := lab.RunInNamespace(ll.lab.Namespace(lab.RoleClient(zone)), func() error {
		var err error
		c, err = nclient4.New("eth0", opts...)
		return err
	})
	if err != nil {
		t.Fatalf("DHCP client in %s: %v", zone, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// configure puts a leased address on the client's eth0, as a client does
// after its ACK, so that unicast replies (renewals) reach it.
func (ll *lanLab) configure(t *testing.T, zone string, a netip.Addr, bits int) {
	t.Helper()
	ns := ll.lab.Namespace(lab.RoleClient(zone))
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", netip.PrefixFrom(a, bits).String(), "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add in %s: %v: %s", zone, err, out)
	}
}

// release sends a DHCPRELEASE the way a client does: from its leased
// address (a packet from 0.0.0.0 to a unicast address is a martian the
// box's kernel drops).
func (ll *lanLab) release(t *testing.T, zone string, lease *nclient4.Lease) {
	t.Helper()
	msg, err := dhcpv4.NewReleaseFromACK(lease.ACK)
	if err != nil {
		t.Fatal(err)
	}
	from := &net.UDPAddr{IP: lease.ACK.YourIPAddr, Port: dhcpv4.ClientPort}
	to := &net.UDPAddr{IP: lease.ACK.ServerIdentifier(), Port: dhcpv4.ServerPort}
	err = lab.RunInNamespace(ll.lab.Namespace(lab.RoleClient(zone)), func() error {
		conn, err := net.ListenUDP("udp4", from)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteTo(msg.ToBytes(), to)
		return err
	})
	if err != nil {
		t.Fatalf("release from %s: %v", from, err)
	}
}

func addrOf(t *testing.T, ip net.IP) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		t.Fatalf("not an IPv4 address: %v", ip)
	}
	return a
}

// leaseFile reads a zone's lease file as the daemon wrote it.
type leaseFileEntry struct {
	Address string    `json:"address"`
	MAC     string    `json:"mac"`
	Expires time.Time `json:"expires"`
}

func (ll *lanLab) leases(t *testing.T, zone string) map[string]leaseFileEntry {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ll.leaseDir, zone+".json"))
	if err != nil {
		t.Fatalf("lease file of %s: %v", zone, err)
	}
	var f struct{ Leases []leaseFileEntry }
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("lease file of %s: %v", zone, err)
	}
	out := map[string]leaseFileEntry{}
	for _, l := range f.Leases {
		out[l.MAC] = l
	}
	return out
}

func TestLabDHCPLeaseInEveryZoneRenewAndRelease(t *testing.T) {
	ll := upLANLab(t, true)
	fw := ll.start(t)
	fw.waitDHCPServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, z := range ll.cfg.Zones {
		t.Run(z.Name, func(t *testing.T) {
			c := ll.dhcpClient(t, z.Name, nil)
			lease, err := c.Request(ctx)
			if err != nil {
				t.Fatalf("no lease: %v", err)
			}
			ack := lease.ACK
			got := addrOf(t, ack.YourIPAddr)
			if got.Less(z.DHCP.RangeStart) || z.DHCP.RangeEnd.Less(got) {
				t.Errorf("leased %s, outside the zone's pool %s-%s", got, z.DHCP.RangeStart, z.DHCP.RangeEnd)
			}
			box := net.IP(z.Address.AsSlice())
			if r := ack.Router(); len(r) != 1 || !r[0].Equal(box) {
				t.Errorf("router option %v, want %s", r, box)
			}
			if d := ack.DNS(); len(d) != 1 || !d[0].Equal(box) {
				t.Errorf("DNS option %v, want %s", d, box)
			}
			if n := ack.NTPServers(); z.Kind == config.KindGuest && len(n) != 0 {
				t.Errorf("guest zone offered NTP %v", n)
			} else if z.Kind != config.KindGuest && (len(n) != 1 || !n[0].Equal(box)) {
				t.Errorf("NTP option %v, want %s", n, box)
			}
			if ack.DomainName() != z.DHCP.Domain {
				t.Errorf("domain %q, want %q", ack.DomainName(), z.DHCP.Domain)
			}
			// A new device's first lease is short (10 minutes, issue 12);
			// its renewal gets the zone's lease time.
			if lt := ack.IPAddressLeaseTime(0); lt != min(10*time.Minute, z.DHCP.LeaseTime.D()) {
				t.Errorf("first lease time %s, want 10m0s", lt)
			}
			mac := c.InterfaceAddr().String()
			if l, ok := ll.leases(t, z.Name)[mac]; !ok || l.Address != got.String() || !l.Expires.After(time.Now()) {
				t.Errorf("lease file has %+v for %s, want %s", l, mac, got)
			}

			ll.configure(t, z.Name, got, z.Subnet.Bits())
			renewed, err := c.Renew(ctx, lease)
			if err != nil {
				t.Fatalf("renew: %v", err)
			}
			if a := addrOf(t, renewed.ACK.YourIPAddr); a != got {
				t.Errorf("renewal gave %s, want %s", a, got)
			}
			if lt := renewed.ACK.IPAddressLeaseTime(0); lt != z.DHCP.LeaseTime.D() {
				t.Errorf("renewed lease time %s, want %s", lt, z.DHCP.LeaseTime)
			}
			ll.release(t, z.Name, renewed)
			waitReleased(t, ll, z.Name, mac, got)
		})
	}

	t.Run("reservation", func(t *testing.T) {
		hw, _ := net.ParseMAC(reservedMAC)
		c := ll.dhcpClient(t, "peda", hw)
		for i := range 2 {
			lease, err := c.Request(ctx)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			a := addrOf(t, lease.ACK.YourIPAddr)
			if a.String() != reservedAddr {
				t.Fatalf("reserved MAC got %s, want %s", a, reservedAddr)
			}
			if i == 0 {
				ll.configure(t, "peda", a, 24)
			}
			ll.release(t, "peda", lease)
			waitReleased(t, ll, "peda", reservedMAC, a)
		}
	})
}

// waitReleased waits until the lease file shows mac's lease of a ended
// (expired, and remembered for the same client). The file is written at
// most every 5 seconds (dhcpd.DefaultSaveEvery).
func waitReleased(t *testing.T, ll *lanLab, zone, mac string, a netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for {
		l := ll.leases(t, zone)[mac]
		if l.Address == a.String() && !l.Expires.After(time.Now()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s not released in the lease file: %+v", mac, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLabDHCPLeasesSurviveDaemonRestart(t *testing.T) {
	ll := upLANLab(t, true)
	fw := ll.start(t)
	fw.waitDHCPServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type held struct {
		zone   string
		client *nclient4.Client
		lease  *nclient4.Lease
		addr   netip.Addr
	}
	var all []held
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for _, z := range ll.cfg.Zones {
		n := 1
		if z.Name == "peda" {
			n = 8 // several devices behind one client namespace
		}
		for i := range n {
			var hw net.HardwareAddr
			if i > 0 {
				hw = net.HardwareAddr{0x02, 0x1a, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(i)}
			}
			c := ll.dhcpClient(t, z.Name, hw)
			lease, err := c.Request(ctx)
			if err != nil {
				t.Fatalf("%s client %d: %v", z.Name, i, err)
			}
			a := addrOf(t, lease.ACK.YourIPAddr)
			ll.configure(t, z.Name, a, z.Subnet.Bits())
			all = append(all, held{z.Name, c, lease, a})
		}
	}
	before := map[string]map[string]leaseFileEntry{}
	for _, z := range ll.cfg.Zones {
		before[z.Name] = ll.leases(t, z.Name)
	}

	fw.stop(t)
	fw = ll.start(t)
	fw.waitEvent(t, 5*time.Second, "dhcp-leases-loaded", nil)
	fw.waitDHCPServing(t)

	for _, h := range all {
		renewed, err := h.client.Renew(ctx, h.lease)
		if err != nil {
			t.Errorf("%s: %s renewing %s after the restart: %v", h.zone, h.client.InterfaceAddr(), h.addr, err)
			continue
		}
		if a := addrOf(t, renewed.ACK.YourIPAddr); a != h.addr {
			t.Errorf("%s: %s renewed with %s, had %s", h.zone, h.client.InterfaceAddr(), a, h.addr)
		}
	}
	// Every lease from before the restart is still in the files, for the
	// same client and address.
	for zone, ls := range before {
		after := ll.leases(t, zone)
		for mac, l := range ls {
			if a, ok := after[mac]; !ok || a.Address != l.Address || !a.Expires.After(time.Now()) {
				t.Errorf("%s: lease of %s (%s) after the restart: %+v", zone, mac, l.Address, a)
			}
		}
	}
	// A new device gets none of the addresses held before the restart.
	c := ll.dhcpClient(t, "peda", net.HardwareAddr{0x02, 0x1b, 0, 0, 0, 1})
	lease, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("new client after the restart: %v", err)
	}
	a := addrOf(t, lease.ACK.YourIPAddr)
	for _, h := range all {
		if h.addr == a {
			t.Errorf("new client got %s, still leased to %s", a, h.client.InterfaceAddr())
		}
	}
}

// queryNTP asks server for the time from a namespace; it returns the
// answer and the local times of sending and receiving.
func queryNTP(ns string, server netip.AddrPort) (timesync.Packet, time.Time, time.Time, error) {
	conn, err := lab.DialContext(context.Background(), ns, "udp4", server.String())
	if err != nil {
		return timesync.Packet{}, time.Time{}, time.Time{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	q := timesync.Packet{Version: 4, Mode: timesync.ModeClient, Transmit: timesync.Timestamp(rand.Uint64() | 1)}
	t1 := time.Now()
	if _, err := conn.Write(q.Append(nil)); err != nil {
		return timesync.Packet{}, t1, t1, err
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	t4 := time.Now()
	if err != nil {
		return timesync.Packet{}, t1, t4, err
	}
	p, err := timesync.ParsePacket(buf[:n])
	if err == nil && p.Origin != q.Transmit {
		err = errors.New("answer does not echo the query's transmit timestamp")
	}
	return p, t1, t4, err
}

func TestLabNTPBoxSyncsAndServesTheZones(t *testing.T) {
	ll := upLANLab(t, false)
	// The lab's internet server answers NTP as a stratum-1 reference.
	fw := ll.start(t)
	// The box's own sync state: logged, and carried by its answers
	// (leap 0, stratum of its source + 1, source address as reference).
	fw.waitEvent(t, 15*time.Second, "time-synced", map[string]string{"server": "203.0.113.10", "stratum": "1"})
	for _, z := range ll.cfg.Zones {
		t.Run(z.Name, func(t *testing.T) {
			ns := ll.lab.Namespace(lab.RoleClient(z.Name))
			if z.Kind == config.KindGuest {
				if _, _, _, err := queryNTP(ns, netip.AddrPortFrom(z.Address, timesync.Port)); err == nil {
					t.Error("the box answered NTP in a guest zone")
				}
				return
			}
			var p timesync.Packet
			var t1, t4 time.Time
			var err error
			for range 20 { // the zone listener may still be starting
				if p, t1, t4, err = queryNTP(ns, netip.AddrPortFrom(z.Address, timesync.Port)); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("NTP query to %s: %v", z.Address, err)
			}
			if p.Mode != timesync.ModeServer || p.Leap != 0 || p.Stratum != 2 {
				t.Errorf("answer %s, want a synchronised stratum 2 server", p)
			}
			if p.RefID != [4]byte{203, 0, 113, 10} {
				t.Errorf("reference %v, want the lab's 203.0.113.10", p.RefID)
			}
			tx := p.Transmit.Time(t1)
			if tx.Before(t1.Add(-time.Second)) || tx.After(t4.Add(time.Second)) {
				t.Errorf("box's time %s, not within a second of the query (%s-%s)", tx, t1, t4)
			}
			if rt := p.RefTime.Time(t1); t1.Sub(rt) > time.Minute || rt.After(t4) {
				t.Errorf("reference time %s is not the recent sync", rt)
			}
		})
	}
}
