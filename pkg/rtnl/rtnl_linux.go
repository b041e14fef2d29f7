// Package rtnl holds what every package that talks route netlink does
// the same way: one socket opened on first use in a chosen network
// namespace, dumps retried when the kernel says they were interrupted,
// and a function run on a thread moved into another namespace.
package rtnl

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Socket is a route-netlink handle opened on first use and then kept:
// failover must not wait for a new socket. It is not safe for concurrent
// first use; its owner's mutex guards it, as it guards the owner's state.
type Socket struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

// In returns a Socket acting on the namespace ns; netns.None() is the
// caller's own.
func In(ns netns.NsHandle) *Socket { return &Socket{ns: ns} }

// Handle opens the socket the first time and returns it.
func (s *Socket) Handle() (*netlink.Handle, error) {
	if s.h != nil {
		return s.h, nil
	}
	var (
		h   *netlink.Handle
		err error
	)
	if s.ns.IsOpen() {
		h, err = netlink.NewHandleAt(s.ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	s.h = h
	return h, nil
}

// Dump repeats a netlink dump the kernel reports as interrupted (a link,
// address or route changed while it was dumped; the result may be
// inconsistent). Interruption is transient: a few attempts suffice.
func Dump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 10 {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

// Do runs f on a thread moved into the namespace ns and moved back after:
// /proc/sys/net and new sockets belong to the namespace of the thread
// that opens them. With netns.None(), f runs where it is. A thread that
// cannot be moved back is never given back to the runtime.
func Do(ns netns.NsHandle, f func() error) error {
	if !ns.IsOpen() {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread() // setns failed: the thread did not move
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		err = f()
		if serr := netns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with the goroutine
		errc <- err
	}()
	return <-errc
}
