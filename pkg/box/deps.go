package box

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/health"
)

// Deps are the collaborators every component is built with, passed the
// same way to each package's New. The zero value is usable: logs are
// discarded, metrics not registered, warnings dropped, the clock is
// time.Now. `passerelle plan` builds components with the zero value.
type Deps struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	Health  *health.Registry // nil-safe
	Now     func() time.Time
}

// For returns d with every nil field filled in and the logger tagged with
// the component's name, as a component's New stores it.
func (d Deps) For(component string) Deps {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	d.Log = d.Log.With("component", component)
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry() // registered, never gathered
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}
