package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"gopkg.in/yaml.v3"

	"passerelle/pkg/dhcpclient"
	"passerelle/pkg/netnstest"
)

// The school computer of the qemu boot test: a TAP device in a network
// namespace of its own is the other end of the VM's lan0 (QEMU gets the
// TAP's descriptor, so nothing is ever created in the host's namespace).
// In that namespace the project's own DHCP client asks the box for a
// lease; the test then resolves names through the box's filtering DNS and
// fetches a page from the "internet": QEMU's user network on wan0 carries
// the box's traffic to 10.0.2.2, which is the host's loopback, where the
// test serves DNS (the box's upstream) and HTTP.
const (
	// lanAllowed is answered by the test's upstream, and allowed by the
	// profile: without UT1 lists on /perm the profile is fail-closed
	// (everything else is blocked), the shipped default.
	lanAllowed = "manuels.ecole-exemple.fr."
	// lanBlocked is any other name: the box must answer it as blocked
	// without asking the upstream.
	lanBlocked  = "jeux.ecole-exemple.fr."
	lanAnswer   = "192.0.2.80"
	lanGateway  = "10.0.2.2" // QEMU's user network: the host's loopback, seen from the box
	lanMAC      = "02:00:5e:99:00:02"
	lanTapName  = "lan-pc"
	lanBoxAddr  = "10.99.0.1"
	lanZoneName = "ecole"
)

// lanPort is how startVM wires the box's lan0: the -netdev options and the
// files they name (fd=3 is files[0]). The zero value is a user network
// with no way out, a LAN nobody is plugged into.
type lanPort struct {
	netdev string
	files  []*os.File
}

func (p lanPort) netdevArg() string {
	if p.netdev == "" {
		return "user,id=lan,restrict=on"
	}
	return p.netdev
}

// qemuLAN is the school computer and the host-side servers it talks to.
type qemuLAN struct {
	ns        *netnstest.NS
	h         *netlink.Handle
	tap       *os.File // the TAP's queue; QEMU gets a copy
	link      netlink.Link
	leaseFile string
	up        *lanUpstream
	web       netip.AddrPort // the host's HTTP server, on loopback
	token     string         // what it answers

	lease *dhcpclient.Lease // the lease of the last boot
}

// newQEMULAN builds the client side; nil when not root (the TAP and the
// namespace need it): the test then boots with the unplugged LAN.
func newQEMULAN(t *testing.T, dir string) *qemuLAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: no LAN client (a TAP in a namespace needs root); lan0 is left unplugged")
		return nil
	}
	l := &qemuLAN{ns: netnstest.New(t), leaseFile: filepath.Join(dir, "lan-pc.lease"), token: fmt.Sprintf("passerelle-lan-%d", time.Now().UnixNano())}
	l.h = l.ns.Handle()
	mac, _ := net.ParseMAC(lanMAC)
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: lanTapName},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// QEMU expects frames without the packet-info header; one queue,
		// whose descriptor we keep for QEMU. Not persistent: the device
		// goes away with the last descriptor (the test's and QEMU's).
		Flags:      netlink.TUNTAP_NO_PI,
		Queues:     1,
		NonPersist: true,
	}
	// Opening /dev/net/tun from a thread in the namespace creates the
	// device there.
	if err := l.ns.Do(func() error { return netlink.LinkAdd(tap) }); err != nil {
		t.Fatalf("TAP in the LAN namespace: %v", err)
	}
	l.tap = tap.Fds[0]
	t.Cleanup(func() { l.tap.Close() })
	link, err := l.h.LinkByName(lanTapName)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.h.LinkSetHardwareAddr(link, mac); err != nil {
		t.Fatalf("TAP address: %v", err)
	}
	if err := l.h.LinkSetUp(link); err != nil {
		t.Fatalf("TAP up: %v", err)
	}
	l.link = link

	l.up = startLANUpstream(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.web = ln.Addr().(*net.TCPAddr).AddrPort()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, l.token) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return l
}

// port is what startVM puts on lan0: the TAP, or the unplugged LAN.
func (l *qemuLAN) port() lanPort {
	if l == nil {
		return lanPort{}
	}
	return lanPort{netdev: "tap,id=lan,fd=3", files: []*os.File{l.tap}}
}

// config writes the image's configuration: rootfs/qemu-arm64.yaml with the
// test's upstream as the box's resolver and lanAllowed allowed.
func (l *qemuLAN) config(t *testing.T, dir string) string {
	t.Helper()
	const shipped = "rootfs/qemu-arm64.yaml" // from the module root
	if l == nil {
		return shipped
	}
	data, err := os.ReadFile(filepath.Join("..", shipped))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", shipped, err)
	}
	dnsSection, _ := doc["dns"].(map[string]any)
	if dnsSection == nil {
		t.Fatalf("%s has no dns section", shipped)
	}
	dnsSection["upstreams"] = []any{map[string]any{"address": fmt.Sprintf("%s:%d", lanGateway, l.up.port)}}
	profiles, _ := dnsSection["profiles"].([]any)
	if len(profiles) == 0 {
		t.Fatalf("%s has no dns profile", shipped)
	}
	for _, p := range profiles {
		p.(map[string]any)["allow"] = []any{strings.TrimSuffix(lanAllowed, ".")}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "qemu-lan.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// check is the school computer's part of one boot: a lease from the box,
// a name resolved through it, a blocked name blocked, a page from the
// uplink side. From the second boot on, the box must have kept the
// first boot's leases on /perm and give the computer the same address.
func (l *qemuLAN) check(t *testing.T, v *vm, boot int) {
	t.Helper()
	if l == nil {
		t.Log("no LAN client (not root)")
		return
	}
	v.waitEvent(t, 60*time.Second, func(e map[string]any) bool {
		return e["event"] == "dhcp-serving" && e["zone"] == lanZoneName
	})
	// The zone's leases are read before it serves; a blank /perm has none
	// (and no event).
	if boot > 1 {
		loaded := v.find(func(e map[string]any) bool { return e["event"] == "dhcp-leases-loaded" && e["zone"] == lanZoneName })
		if records, _ := loaded["records"].(float64); records < 1 {
			t.Errorf("boot %d: the box loaded no lease of zone %s (%v); the first boot's should be on /perm", boot, lanZoneName, loaded)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	leases := make(chan *dhcpclient.Lease, 4)
	client, err := dhcpclient.New(dhcpclient.Config{
		Interface: lanTapName,
		LeaseFile: l.leaseFile, // kept across boots: the computer asks for its address again
		OnLease: func(_, n *dhcpclient.Lease) {
			select {
			case leases <- n: // the first one is read; renewals never block the client
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		// The client's sockets are made on this thread, which never
		// leaves the namespace (it dies with the goroutine).
		if err := l.ns.Enter(); err != nil {
			done <- err
			return
		}
		done <- client.Run(ctx)
	}()
	// Stopped before the power off: the client releases its lease, as a
	// computer shut down at the end of the day.
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("LAN DHCP client: %v", err)
		}
	}()

	var lease *dhcpclient.Lease
	select {
	case lease = <-leases:
		if lease == nil {
			t.Fatal("LAN DHCP client: lease lost before any was granted")
		}
	case err := <-done:
		t.Fatalf("LAN DHCP client stopped: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatalf("no lease from the box after 90 s (client state %s)", client.State())
	}
	took := time.Since(start)
	t.Logf("boot %d: LAN lease %s in %.2f s", boot, lease, took.Seconds())
	if !lease.Gateway.IsValid() || lease.Gateway.String() != lanBoxAddr || len(lease.DNS) == 0 || lease.DNS[0].String() != lanBoxAddr {
		t.Errorf("lease %s: gateway %v, DNS %v; want the box, %s, for both", lease, lease.Gateway, lease.DNS, lanBoxAddr)
	}
	if l.lease != nil && l.lease.Address != lease.Address {
		t.Errorf("boot %d: the computer got %s, it had %s before the reboot", boot, lease.Address, l.lease.Address)
	}
	l.lease = lease
	if err := l.h.AddrReplace(l.link, &netlink.Addr{IPNet: prefixNet(lease.Address)}); err != nil {
		t.Fatalf("LAN address: %v", err)
	}
	if err := l.h.RouteReplace(&netlink.Route{LinkIndex: l.link.Attrs().Index, Gw: lease.Gateway.AsSlice()}); err != nil {
		t.Fatalf("LAN default route: %v", err)
	}

	// DNS: the allowed name comes from the upstream through the box.
	box := net.JoinHostPort(lanBoxAddr, "53")
	var answer *dns.Msg
	waitUntil(t, "an answer for "+lanAllowed+" from the box", 60*time.Second, func() bool {
		answer, err = l.query(box, lanAllowed)
		return err == nil && answer.Rcode == dns.RcodeSuccess && len(answer.Answer) > 0
	})
	if a, ok := answer.Answer[0].(*dns.A); !ok || a.A.String() != lanAnswer {
		t.Errorf("%s: %v, want A %s", lanAllowed, answer.Answer, lanAnswer)
	}
	if !l.up.asked(lanAllowed) {
		t.Errorf("the box answered %s without asking its upstream", lanAllowed)
	}
	// Any other name is blocked (fail-closed without lists), never asked.
	blocked, err := l.query(box, lanBlocked)
	if err != nil {
		t.Fatalf("%s: %v", lanBlocked, err)
	}
	if blocked.Rcode != dns.RcodeNameError || !hasEDE(blocked) {
		t.Errorf("%s: %s with %v, want NXDOMAIN with an extended error saying why", lanBlocked, dns.RcodeToString[blocked.Rcode], blocked.Extra)
	}
	if l.up.asked(lanBlocked) {
		t.Errorf("the box forwarded the blocked name %s to its upstream", lanBlocked)
	}

	// The uplink: a page from the host's server, through the box's NAT
	// and QEMU's user network.
	url := fmt.Sprintf("http://%s:%d/", lanGateway, l.web.Port())
	var body string
	waitUntil(t, "a page from "+url+" through the box", 60*time.Second, func() bool {
		body, err = l.get(url)
		return err == nil
	})
	if body != l.token {
		t.Errorf("GET %s: %q, want %q", url, body, l.token)
	}
	t.Logf("boot %d: LAN client resolved %s and fetched %s through the box", boot, lanAllowed, url)
	// The box's own view: its uplink answers its probes (QEMU's gateway,
	// rootfs/qemu-arm64.yaml). Without it the box would still use the
	// uplink, as a fallback, with a critical warning.
	v.waitEvent(t, 60*time.Second, func(e map[string]any) bool {
		return e["event"] == "uplink-state" && e["uplink"] == "qemu" && e["state"] == "online"
	})
	t.Logf("boot %d: uplink qemu online (seen %.1f s after QEMU started)", boot, time.Since(v.started).Seconds())
}

// query asks server for name's A record from the namespace.
func (l *qemuLAN) query(server, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 3 * time.Second}
	var in *dns.Msg
	err := l.ns.Do(func() (err error) {
		in, _, err = c.Exchange(m, server)
		return err
	})
	return in, err
}

// get fetches url from the namespace.
func (l *qemuLAN) get(url string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The socket is made in the namespace; the transport's own
		// goroutines then use it from anywhere.
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = l.ns.Do(func() error {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

func hasEDE(m *dns.Msg) bool {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if _, ok := o.(*dns.EDNS0_EDE); ok {
				return true
			}
		}
	}
	return false
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// lanUpstream is the box's resolver in the test: on the host's loopback
// (the box reaches it as 10.0.2.2), UDP and TCP on one port; it answers
// lanAllowed and records every question.
type lanUpstream struct {
	port int
	mu   sync.Mutex
	seen map[string]bool
}

func startLANUpstream(t *testing.T) *lanUpstream {
	t.Helper()
	u := &lanUpstream{seen: map[string]bool{}}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		for _, qq := range q.Question {
			name := strings.ToLower(qq.Name)
			u.mu.Lock()
			u.seen[name] = true
			u.mu.Unlock()
			if name == lanAllowed && qq.Qtype == dns.TypeA {
				r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(lanAnswer)})
			}
		}
		w.WriteMsg(r)
	})
	// One port for both: the box may retry over TCP.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.port = pc.LocalAddr().(*net.UDPAddr).Port
		if ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", u.port)); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("upstream DNS: no port free for both UDP and TCP: %v", err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	for _, s := range []*dns.Server{udp, tcp} {
		go s.ActivateAndServe() // returns when shut down
		t.Cleanup(func() { s.Shutdown() })
	}
	return u
}

func (u *lanUpstream) asked(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[strings.ToLower(name)]
}
