// Package watchdog drives the board's hardware watchdog: armed with the
// board's timeout, kicked only while the daemon's main loop and its
// critical components prove they are alive, and disarmed (magic close) on
// an orderly shutdown. A hung daemon stops kicking and the hardware
// reboots the box.
//
// The decision to kick is pure (Healthy takes the time) and tested with a
// fake clock; the device is behind the Device interface, with the Linux
// implementation in device_linux.go.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Device is an armed watchdog.
type Device interface {
	// Kick postpones the reboot by the device's timeout.
	Kick() error
	// Disarm stops the watchdog and closes the device (magic close);
	// drivers built with nowayout ignore it and reboot the box later.
	Disarm() error
}

// Heart is the heartbeat of a component the box cannot live without: it
// must Beat more often than its maxSilence, or the watchdog stops kicking.
type Heart struct {
	name       string
	maxSilence time.Duration
	w          *Watchdog
}

// Beat says the component is alive now.
func (h *Heart) Beat() {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.beats[h.name] = h.w.now()
}

// Watchdog decides when to kick a Device.
type Watchdog struct {
	log      *slog.Logger
	dev      Device
	now      func() time.Time
	interval time.Duration

	mu     sync.Mutex
	hearts []*Heart
	beats  map[string]time.Time
	checks []check
	kicked bool // the last tick kicked: log transitions only
	kicks  int
}

type check struct {
	name string
	fn   func() error
}

// New returns a watchdog that kicks dev every interval while healthy; now
// is the clock (nil: time.Now). Use an interval well below the device
// timeout (a third is usual).
func New(log *slog.Logger, dev Device, now func() time.Time, interval time.Duration) *Watchdog {
	if now == nil {
		now = time.Now
	}
	return &Watchdog{log: log, dev: dev, now: now, interval: interval, beats: map[string]time.Time{}, kicked: true}
}

// Heart registers a critical component that must beat at least every
// maxSilence. It counts as alive from registration on.
func (w *Watchdog) Heart(name string, maxSilence time.Duration) *Heart {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := &Heart{name: name, maxSilence: maxSilence, w: w}
	w.hearts = append(w.hearts, h)
	w.beats[name] = w.now()
	return h
}

// Check registers a health check run before each kick: a non-nil error
// (a critical service failed) stops the kicks.
func (w *Watchdog) Check(name string, fn func() error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checks = append(w.checks, check{name, fn})
}

// Healthy reports whether the watchdog may be kicked at now: every heart
// beat within its maxSilence and every check passes.
func (w *Watchdog) Healthy(now time.Time) error {
	w.mu.Lock()
	hearts := append([]*Heart(nil), w.hearts...)
	beats := make(map[string]time.Time, len(w.beats))
	for k, v := range w.beats {
		beats[k] = v
	}
	checks := append([]check(nil), w.checks...)
	w.mu.Unlock()
	var errs []error
	for _, h := range hearts {
		if silent := now.Sub(beats[h.name]); silent > h.maxSilence {
			errs = append(errs, fmt.Errorf("%s silent for %s (limit %s)", h.name, silent.Round(time.Millisecond), h.maxSilence))
		}
	}
	for _, c := range checks {
		if err := c.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// Tick kicks the device if the box is healthy, and reports whether it did.
func (w *Watchdog) Tick() bool {
	err := w.Healthy(w.now())
	w.mu.Lock()
	was := w.kicked
	w.kicked = err == nil
	w.mu.Unlock()
	if err != nil {
		if was {
			w.log.Error("watchdog: not kicking; the box reboots unless this recovers", "event", "watchdog-stalled", "err", err)
		}
		return false
	}
	if !was {
		w.log.Warn("watchdog: healthy again; kicking")
	}
	if kerr := w.dev.Kick(); kerr != nil {
		w.log.Error("watchdog: kick failed", "err", kerr)
		return false
	}
	w.mu.Lock()
	w.kicks++
	w.mu.Unlock()
	return true
}

// Kicks counts successful kicks.
func (w *Watchdog) Kicks() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kicks
}

// Run kicks every interval until ctx is done. It leaves the device armed:
// only Disarm, at the very end of an orderly shutdown, disarms it, so a
// shutdown that hangs still ends in a reboot.
func (w *Watchdog) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	w.Tick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Tick()
		}
	}
}

// Disarm stops the hardware watchdog (orderly shutdown).
func (w *Watchdog) Disarm() error {
	if err := w.dev.Disarm(); err != nil {
		return fmt.Errorf("watchdog: disarm: %w", err)
	}
	w.log.Info("watchdog disarmed")
	return nil
}
