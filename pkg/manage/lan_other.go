//go:build !linux

package manage

import (
	"context"

	"passerelle/pkg/config"
)

// LANProbe passes everywhere but Linux (no neighbour table to read).
func LANProbe() Probe {
	return Probe{Name: "lan", Check: func(context.Context, *config.Config, any) error { return nil }}
}
