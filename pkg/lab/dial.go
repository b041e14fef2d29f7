package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"
)

// These helpers open sockets and start processes inside a lab namespace.
// They exist because Go moves goroutines between threads: code that merely
// runs "after" a setns is not guaranteed to run in the namespace, and many
// libraries (net/http's transport, for one) dial from goroutines of their
// own. Creating the socket inside RunInNamespace pins it for good.

// DialContext connects to address inside the network namespace nsName.
// Host names are resolved by Go's resolver inside the namespace only when
// it does so on the calling thread; pass IP addresses to be sure.
func DialContext(ctx context.Context, nsName, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := RunInNamespace(nsName, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s %s in %s: %w", network, address, nsName, err)
	}
	return conn, nil
}

// Listen opens a stream listener inside the network namespace nsName.
func Listen(nsName, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := RunInNamespace(nsName, func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen on %s %s in %s: %w", network, address, nsName, err)
	}
	return ln, nil
}

// ListenPacket opens a datagram socket inside the network namespace nsName.
func ListenPacket(nsName, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := RunInNamespace(nsName, func() error {
		var err error
		pc, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen on %s %s in %s: %w", network, address, nsName, err)
	}
	return pc, nil
}

// HTTPClient returns an HTTP client whose connections are made from inside
// the network namespace nsName. It ignores proxy environment variables (a
// lab has no proxy) and keeps no idle connections, since an open socket
// would keep the namespace alive after the lab is torn down.
func HTTPClient(nsName string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return DialContext(ctx, nsName, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

// StartCommand starts cmd with the network namespace nsName: the child is
// forked from a thread inside the namespace and inherits it.
func StartCommand(nsName string, cmd *exec.Cmd) error {
	if err := RunInNamespace(nsName, cmd.Start); err != nil {
		return fmt.Errorf("lab: start %s in %s: %w", cmd.Path, nsName, err)
	}
	return nil
}
