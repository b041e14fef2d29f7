package netif

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Run is the hotplug loop: it watches link events (netlink RTNLGRP_LINK)
// and re-applies the interfaces plan when a planned interface that was
// missing appears, so a USB modem plugged in later, or a slow driver, is
// configured without a restart. A planned interface that disappears is
// reported missing again. The subscription is renewed if it breaks, with
// a fresh listing of the links so no event is lost for good.
func (m *Manager) Run(ctx context.Context) error {
	for {
		if err := m.watchLinks(ctx); err != nil {
			m.log.Warn("link subscription failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		m.log.Info("link subscription renewed")
	}
}

func (m *Manager) watchLinks(ctx context.Context) error {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	opts := netlink.LinkSubscribeOptions{
		ListExisting: true, // links that appeared before we listened
		ErrorCallback: func(err error) {
			m.log.Debug("link subscription", "err", err)
		},
	}
	// Listen where the executor acts (a test's namespace).
	if ls, ok := m.sys.(*linuxSystem); ok && ls.ns.IsOpen() {
		opts.Namespace = &ls.ns
	}
	err := netlink.LinkSubscribeWithOptions(ch, done, opts)
	if err != nil {
		close(done)
		return err
	}
	defer func() {
		close(done)
		for range ch { // the library's reader closes ch once it sees done
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				return nil // the library closes ch on a receive error
			}
			m.linkChanged(ctx, linkEvent{name: u.Attrs().Name, removed: u.Header.Type == unix.RTM_DELLINK})
		}
	}
}

func (m *Manager) linkChanged(ctx context.Context, ev linkEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reapply, gone := m.needsApply(ev)
	switch {
	case gone:
		m.log.Warn("interface disappeared; it will be configured again when it comes back", "interface", ev.name)
		m.missing = append(m.missing, ev.name)
		m.reportMissing(m.applied)
	case reapply:
		m.log.Info("missing interface appeared; configuring it", "interface", ev.name)
		missing, err := m.converge(ctx, m.applied)
		m.missing = missing
		m.reportMissing(m.applied)
		if err != nil {
			m.log.Error("configuring the new interface failed", "interface", ev.name, "err", err)
			return
		}
		m.log.Info("interface configured", "interface", ev.name, "still_missing", missing)
	}
}
