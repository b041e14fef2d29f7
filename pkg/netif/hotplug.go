package netif

import (
	"fmt"
	"slices"

	"passerelle/pkg/health"
)

// MissingCode is the health warning code of a missing interface.
func MissingCode(name string) string { return "interface-missing:" + name }

func missingMessage(l Link) string {
	return fmt.Sprintf("Interface %s (%s) is not present; it will be configured as soon as it appears (cable, USB modem or driver).", l.Name, l.Role)
}

// reportMissing raises a warning per planned interface that is missing
// and clears those that are back or no longer planned. Called with m.mu
// held.
func (m *Manager) reportMissing(want *Plan) {
	for name := range m.warned {
		if _, planned := want.Link(name); !planned || !slices.Contains(m.missing, name) {
			m.health.Clear(MissingCode(name))
			delete(m.warned, name)
		}
	}
	for _, name := range m.missing {
		l, _ := want.Link(name)
		m.health.Raise("interfaces", MissingCode(name), health.Warn, missingMessage(l))
		m.warned[name] = true
	}
}

// linkEvent is what the hotplug loop learns from one netlink message.
type linkEvent struct {
	name    string
	removed bool
}

// needsApply decides what a link event means for the applied plan: a
// missing planned link appeared (re-apply), or a planned link went away
// (now missing). Called with m.mu held.
func (m *Manager) needsApply(ev linkEvent) (reapply, gone bool) {
	if m.applied == nil {
		return false, false
	}
	if _, planned := m.applied.Link(ev.name); !planned {
		return false, false
	}
	missing := slices.Contains(m.missing, ev.name)
	if ev.removed {
		return false, !missing
	}
	return missing, false
}
