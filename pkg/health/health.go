// Package health is the one place where the box's components raise and
// clear named warnings. The status page, the metrics and the config health
// gate read it; nothing else keeps its own list of what is wrong.
package health

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// Severity says how much a warning matters to the school.
type Severity int

const (
	// Info is worth knowing: nothing is impaired.
	Info Severity = iota
	// Warn means a service is degraded or at risk (backup uplink in
	// use, DHCP pool nearly full).
	Warn
	// Critical means a service the school relies on is down.
	Critical
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warn:
		return "warning"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// Warning is one raised condition.
type Warning struct {
	Code      string // stable identifier, e.g. "interface-missing:wan1"
	Component string // who raised it, e.g. "interfaces"
	Severity  Severity
	Message   string // plain words for a technician, in the school's language
	Since     time.Time
}

// Registry holds the current warnings. The zero value is not usable: use
// New. A nil *Registry is valid and keeps nothing, so components built
// without one (plan, tests) need no checks of their own.
type Registry struct {
	now func() time.Time

	mu       sync.Mutex
	warnings map[string]Warning
	watchers []chan struct{}
}

// New returns an empty registry; now is the clock (time.Now in the box,
// a fake in tests).
func New(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, warnings: map[string]Warning{}}
}

// Raise records or updates a warning. Raising a warning that is already
// raised keeps its Since time, so "since when" means since it started.
func (r *Registry) Raise(component, code string, sev Severity, message string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.warnings[code]
	if !ok {
		w.Since = r.now()
	}
	changed := !ok || w.Severity != sev || w.Message != message
	w.Code, w.Component, w.Severity, w.Message = code, component, sev, message
	r.warnings[code] = w
	if changed {
		r.notify()
	}
}

// Clear removes a warning; clearing one that is not raised does nothing.
func (r *Registry) Clear(code string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.warnings[code]; ok {
		delete(r.warnings, code)
		r.notify()
	}
}

// List returns the current warnings, most severe first, then oldest.
func (r *Registry) List() []Warning {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Warning, 0, len(r.warnings))
	for _, w := range r.warnings {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity > out[j].Severity
		}
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Code < out[j].Code
	})
	return out
}

// Get returns one warning.
func (r *Registry) Get(code string) (Warning, bool) {
	if r == nil {
		return Warning{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.warnings[code]
	return w, ok
}

// Watch returns a channel that receives (without blocking the raiser) when
// the set of warnings changes, and a function to stop watching.
func (r *Registry) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	if r == nil {
		return ch, func() {}
	}
	r.mu.Lock()
	r.watchers = append(r.watchers, ch)
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.watchers = slices.DeleteFunc(r.watchers, func(c chan struct{}) bool { return c == ch })
	}
}

func (r *Registry) notify() {
	for _, ch := range r.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
