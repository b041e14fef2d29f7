package firewall

import (
	"context"
	"fmt"
	"log/slog"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
)

// Firewall is the firewall component of the box.
type Firewall struct {
	log *slog.Logger
}

// New returns the firewall component, acting on the current network
// namespace.
func New(log *slog.Logger) *Firewall { return &Firewall{log: log} }

func (f *Firewall) Name() string { return "firewall" }

func (f *Firewall) Plan(cfg *config.Config) (box.Plan, error) { return Compile(cfg) }

func (f *Firewall) Apply(ctx context.Context, p box.Plan) error {
	plan, ok := p.(*Plan)
	if !ok {
		return fmt.Errorf("firewall: unexpected plan type %T", p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := replaceTable(plan); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}
