package timesync

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens the NTP socket on one zone address. IP_FREEBIND lets it bind
// before the interfaces component has put the address on its link (at
// start, or when a config adds a zone).
func listen(addr netip.AddrPort) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), "udp4", addr.String())
}

// SystemClock steers CLOCK_REALTIME. Only the daemon that owns the box's
// clock may use it: never tests or the lab, whose namespaces share the
// host's clock.
type SystemClock struct{}

// Step jumps the clock by offset.
func (SystemClock) Step(offset time.Duration) error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return err
	}
	t := time.Unix(ts.Unix()).Add(offset)
	ts = unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// Slew has the kernel absorb offset gradually (at most 0.5 ms per second,
// the adjtime() discipline), so time never jumps under running programs.
func (SystemClock) Slew(offset time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}
	_, err := unix.Adjtimex(&tx)
	return err
}
