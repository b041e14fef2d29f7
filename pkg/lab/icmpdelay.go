package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ICMPResponder answers echo requests to some addresses of a namespace
// from userspace, each after a delay chosen by the request's source: the
// lab's way to give one uplink's probes a long round trip, since this
// kernel has no netem. The namespace's own echo replies are turned off
// (net.ipv4.icmp_echo_ignore_all) while it runs; Stop turns them on.
type ICMPResponder struct {
	ns    string
	conns []*net.IPConn
	wg    sync.WaitGroup
}

// StartICMPResponder answers echo requests to addrs in namespace ns after
// delay(source).
func StartICMPResponder(ns string, addrs []netip.Addr, delay func(src netip.Addr) time.Duration) (*ICMPResponder, error) {
	r := &ICMPResponder{ns: ns}
	for _, a := range addrs {
		pc, err := ListenPacket(ns, "ip4:icmp", a.String())
		if err != nil {
			r.Stop()
			return nil, err
		}
		c := pc.(*net.IPConn)
		r.conns = append(r.conns, c)
		r.wg.Go(func() { r.serve(c, delay) })
	}
	if err := r.sysctl("1"); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// sysctl sets net.ipv4.icmp_echo_ignore_all from inside the namespace
// (see applySysctls).
func (r *ICMPResponder) sysctl(v string) error {
	err := RunInNamespace(r.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte(v+"\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("lab: icmp_echo_ignore_all in %s: %w", r.ns, err)
	}
	return nil
}

func (r *ICMPResponder) serve(c *net.IPConn, delay func(netip.Addr) time.Duration) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || msg.Type != ipv4.ICMPTypeEcho {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok {
			continue
		}
		reply, err := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: echo.ID, Seq: echo.Seq, Data: echo.Data}}).Marshal(nil)
		if err != nil {
			continue
		}
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP.To4())
		d := delay(src)
		to := *from.(*net.IPAddr)
		time.AfterFunc(d, func() { _, _ = c.WriteTo(reply, &to) })
	}
}

// Stop closes the sockets and gives the namespace its echo replies back.
func (r *ICMPResponder) Stop() {
	for _, c := range r.conns {
		c.Close()
	}
	r.wg.Wait()
	_ = r.sysctl("0")
}
